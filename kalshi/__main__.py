"""``python -m kalshi`` runs the CLI."""

from kalshi.cli import main

main()
