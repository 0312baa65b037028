# kalshi: a Trio recorder for Kalshi market data. `just --list` shows every recipe.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Run the whole test suite (real PostgreSQL, real S3 server, real simulator)
test *ARGS:
    python -m pytest {{ARGS}}

# ruff and mypy, both must be clean
lint:
    ruff check kalshi tests benchmarks
    mypy kalshi
