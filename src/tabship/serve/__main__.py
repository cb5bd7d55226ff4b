"""`python -m tabship.serve MODEL`: the container's command, configured by TABSHIP_* variables.

It avoids the CLI so the serving image needs neither typer nor rich.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tabship.config import ServeSettings
from tabship.errors import TabshipError
from tabship.serve.server import serve


def main(argv: list[str]) -> int:
    model = argv[1] if len(argv) > 1 else os.environ.get("TABSHIP_MODEL", "")
    if not model:
        sys.stderr.write("error: give the model folder as the argument or in TABSHIP_MODEL\n")
        return 1
    try:
        serve(Path(model), ServeSettings.resolve())
    except TabshipError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
