"""Where a command writes one file (predictions, a log export, a monitor report).

One check for all of them: a user's file is replaced only with --force, a link (even a
dangling one, whose target a write would create) counts as a file, a folder is never a file,
and the input is never its own output.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tabship.errors import ConfigError, OutputExistsError

# What a finished file is given: a temporary file is made private (0600), and the output is
# for whoever reads the folder, as a file written directly would be.
PUBLISHED_MODE = 0o644


def check_output_file(output: Path, force: bool, source: Path | None = None) -> None:
    """Refuse an output that is a folder, the input itself, or (without `force`) anything
    already there."""
    if output.is_dir():
        raise ConfigError(f"-o {output} is a folder; give a file name")
    if source is not None and output.resolve() == source.resolve():
        raise OutputExistsError(f"{output} is the input file; write to another file")
    if (output.exists() or output.is_symlink()) and not force:
        raise OutputExistsError(
            f"{output} already exists; choose another -o or pass --force to replace it"
        )


def publish(finished: Path, output: Path) -> None:
    """Put a finished temporary file in the output's place in one step (a rename)."""
    finished.chmod(PUBLISHED_MODE)
    finished.replace(output)


@contextmanager
def staged(output: Path) -> Iterator[Path]:
    """A temporary file beside `output`, put in its place only when the block completes: a
    failure half-way leaves no partial file and the old one (with --force) as it was."""
    output.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    os.close(descriptor)
    partial = Path(name)
    try:
        yield partial
        publish(partial, output)
    finally:
        partial.unlink(missing_ok=True)


__all__ = ["PUBLISHED_MODE", "check_output_file", "publish", "staged"]
