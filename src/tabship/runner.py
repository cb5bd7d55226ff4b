"""The one way tabship runs external tools: argument lists, never a shell."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tabship.errors import TabshipError


class ToolError(TabshipError):
    """An external tool failed or is missing; the message has its own words and the step."""


@dataclass
class Runner:
    """Runs commands and keeps a transcript of what ran (for dry runs and for tests)."""

    dry_run: bool = False
    echo: bool = False
    transcript: list[list[str]] = field(default_factory=list)

    def run(
        self,
        args: Sequence[str],
        *,
        step: str,
        cwd: Path | None = None,
        check: bool = True,
        capture: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run `args`; on failure raise ToolError naming the step and the tool's last words."""
        command = [str(a) for a in args]
        self.transcript.append(command)
        if self.echo or self.dry_run:
            # Quoted as a shell reads it: a value with a space, quote or newline is one word.
            print("+ " + shlex.join(command), flush=True)
        if self.dry_run:
            return subprocess.CompletedProcess(command, 0, "", "")
        if shutil.which(command[0]) is None:
            raise ToolError(f"{step}: {command[0]} is not installed or not on PATH")
        result = subprocess.run(command, cwd=cwd, text=True, capture_output=capture, check=False)
        if check and result.returncode != 0:
            words = (result.stderr or result.stdout or "").strip().splitlines()[-5:]
            raise ToolError(
                f"{step} failed (exit {result.returncode}): {' | '.join(words) or 'no output'}"
            )
        return result
