"""Registers every command on ``app`` by import path: a command's module (and what it
imports: the gatherer, the store, pyarrow, boto3) is imported only when that command runs.
``kalshi status`` imported all of them first: 1.5 s of its 1.9 s on a quiet machine, several
times that on a busy one (outside tester F6). The one-line help of each command is given
here (the list of commands would import every module for it) and must be its docstring's
first paragraph (``tests/unit/test_cli_help.py`` checks)."""

from kalshi.cli.app import app

COMMANDS = (
    (
        "kalshi.cli.dedup:dedup",
        "dedup",
        "Merge the gatherers' databases into the production database, continuously.",
    ),
    (
        "kalshi.cli.dedup:export",
        "export",
        "Export closed windows of the production database as Parquet (S3 or a directory).",
    ),
    ("kalshi.cli.check:config_app", "config", "Check configs: check."),
    (
        "kalshi.cli.db:db_app",
        "db",
        "Manage the database: up, down, status, migrate, reset.",
    ),
    (
        "kalshi.cli.demo:demo",
        "demo",
        "Record a simulated exchange into the embedded database, with the live screen.",
    ),
    (
        "kalshi.cli.gather:gather",
        "gather",
        "Record every market's order book, trades, tickers and lifecycle.",
    ),
    (
        "kalshi.cli.replay:replay",
        "replay",
        "Replay journals or captures through the live decode -> book -> rows path.",
    ),
    (
        "kalshi.cli.sim:sim",
        "sim",
        "Run a local Kalshi exchange (REST + WebSocket) for demos and tests.",
    ),
    (
        "kalshi.cli.snapshot:snapshot",
        "snapshot",
        "Print the order book of one market: YES and NO bids with cumulative depth, best"
        " bid/ask and spread. No data, an unknown ticker or an unreachable source: one line on"
        " stderr, exit 1.",
    ),
    (
        "kalshi.cli.status:status",
        "status",
        "Attach to a running gatherer's /health (and /metrics) and show the live screen.",
    ),
)
"""``(import path, command, one-line help)`` of every command, in the order an unknown
command's error lists them."""

for path, name, text in COMMANDS:
    app.command(path, name=name, help=text)
