"""Command line: parse arguments, call one library function, print. No logic lives here."""

from __future__ import annotations

# Importing the command modules registers their commands on the app, in --help order.
from tabship.cli import deploying, monitoring, rollout, serving, shipping, training
from tabship.cli.common import app

__all__ = [
    "app",
    "deploying",
    "main",
    "monitoring",
    "rollout",
    "serving",
    "shipping",
    "training",
]


def main() -> None:
    """Console-script entry point."""
    app()
