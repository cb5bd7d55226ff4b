"""`python -m tabship ...`: the CLI where no console script is installed (the container image)."""

from tabship.cli import main

main()
