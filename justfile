# kalshi: a Trio recorder for Kalshi market data. `just --list` shows every recipe.
# The seed's Makefile targets, same names and meanings. Without Docker, `up`, `migrate`,
# `run-*` and friends use the embedded PostgreSQL (.kalshi/pg) and a local S3 server
# (SeaweedFS `weed`) instead, and say so in one line. Variables come from .env.

set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := true

# Start everything and record: up, migrate, run-gatherer
dev: up migrate run-gatherer

# Start TimescaleDB and MinIO with its bucket (without Docker: embedded PostgreSQL + weed)
up:
    #!/usr/bin/env bash
    set -euo pipefail
    source scripts/just-env.sh
    if [ -n "$KALSHI_DOCKER" ]; then
        docker compose up -d --wait timescaledb minio
        docker compose run --rm minio-bucket
    else
        no_docker "starting the embedded PostgreSQL (.kalshi/pg) and a local S3 server (weed)"
        kalshi db up
        python scripts/local_services.py s3 up
    fi

# Stop every service started by up, up-monitoring or the app profile (data is kept)
down:
    #!/usr/bin/env bash
    set -euo pipefail
    source scripts/just-env.sh
    if [ -n "$KALSHI_DOCKER" ]; then
        docker compose --profile monitoring --profile app down
    else
        no_docker "stopping the embedded PostgreSQL, the local S3 server and Prometheus"
        python scripts/local_services.py s3 down
        python scripts/local_services.py prometheus down
        kalshi db down
    fi

# Start Prometheus and Grafana (without Docker: Prometheus from Debian's package, no Grafana)
up-monitoring:
    #!/usr/bin/env bash
    set -euo pipefail
    source scripts/just-env.sh
    if [ -n "$KALSHI_DOCKER" ]; then
        docker compose --profile monitoring up -d
        echo "Prometheus http://localhost:${PROMETHEUS_PORT:-9092}  Grafana http://localhost:${GRAFANA_PORT:-3000}"
    else
        no_docker "Prometheus from Debian's package; no Grafana (import etc/grafana/dashboards/kalshi.json, or use kalshi status)"
        python scripts/local_services.py prometheus up
    fi

# Apply the database migrations (sql/) to TIMESCALEDB_URL, or the embedded PostgreSQL
migrate:
    #!/usr/bin/env bash
    set -euo pipefail
    source scripts/just-env.sh
    [ -n "$KALSHI_DOCKER" ] || no_docker "migrating ${TIMESCALEDB_URL:-the embedded PostgreSQL (.kalshi/pg)}"
    kalshi db migrate ${TIMESCALEDB_URL:+--url "$TIMESCALEDB_URL"}

# Drop all data and start again: volumes removed, stack up, migrations applied
reset-db:
    #!/usr/bin/env bash
    set -euo pipefail
    source scripts/just-env.sh
    if [ -n "$KALSHI_DOCKER" ]; then
        docker compose down -v
        just up migrate
    else
        no_docker "dropping every table of ${TIMESCALEDB_URL:-the embedded PostgreSQL} and migrating again"
        kalshi db reset --yes ${TIMESCALEDB_URL:+--url "$TIMESCALEDB_URL"}
    fi

# Record the real exchange with etc/gatherer.yaml (needs KALSHI_API_KEY in .env)
run-gatherer *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    source scripts/just-env.sh
    [ -n "$KALSHI_DOCKER" ] || no_docker "recording into ${TIMESCALEDB_URL:-the embedded PostgreSQL (.kalshi/pg)}"
    exec kalshi gather --config etc/gatherer.yaml {{ARGS}}

# Merge the gatherer database into production and export Parquet to S3 (etc/dedup.yaml)
run-dedup *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    source scripts/just-env.sh
    started=
    if [ -z "$KALSHI_DOCKER" ]; then
        no_docker "merging the embedded PostgreSQL, exporting to the local S3 server (weed) of just up"
        local_s3_env
        if [ -z "${TIMESCALEDB_URL:-}" ]; then
            # an embedded server this recipe starts is stopped on every exit (just up's stays)
            if embedded_pg_stopped; then started=1; trap stop_embedded_pg EXIT; fi
            TIMESCALEDB_URL=$(kalshi db up | tail -n 1)
        fi
    fi
    if [ -z "${PRODUCTION_URL:-}" ]; then
        # production is its own database on the same server (never a gatherer's)
        PRODUCTION_URL="${TIMESCALEDB_URL%/*}/kalshi_production"
        python - "$TIMESCALEDB_URL" <<'PY'
    import sys
    from kalshi.store import connect_db
    with connect_db(sys.argv[1]) as db:
        if not db.query("SELECT 1 FROM pg_database WHERE datname = 'kalshi_production'"):
            db.execute('CREATE DATABASE "kalshi_production"')
    PY
        kalshi db migrate --url "$PRODUCTION_URL" > /dev/null
    fi
    export TIMESCALEDB_URL PRODUCTION_URL
    if [ -n "$started" ]; then
        kalshi dedup --config etc/dedup.yaml {{ARGS}}
    else
        exec kalshi dedup --config etc/dedup.yaml {{ARGS}}
    fi

# Simulator + embedded PostgreSQL + gatherer with the live screen (no API key, no Docker)
demo *ARGS:
    kalshi demo {{ARGS}}

# Run the whole test suite (real PostgreSQL, real S3 server, real simulator)
test *ARGS:
    python -m pytest {{ARGS}}

# Only the tests that run real servers (PostgreSQL, S3, simulator, Prometheus); no Docker needed
test-integration *ARGS:
    python -m pytest tests --ignore=tests/unit {{ARGS}}

# The test suite with line coverage of kalshi/ (terminal summary and htmlcov/index.html)
test-coverage *ARGS:
    python -m pytest --cov=kalshi --cov-report=term-missing:skip-covered --cov-report=html {{ARGS}}

# ruff and mypy, both must be clean
lint:
    ruff check kalshi tests benchmarks
    mypy kalshi

# Run every benchmark (JSON into benchmarks/results) and generate docs/performance.md's tables
bench:
    python benchmarks/report.py

# Run each benchmark briefly, to prove it still works (no thresholds, docs untouched; CI)
bench-smoke:
    python benchmarks/report.py --smoke

# Long run against the simulator with faults (python -m benchmarks.soak)
soak *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    exec python -m benchmarks.soak {{ARGS}}

# The whole system at full size, measured (benchmarks/scale.py; --minutes 30 --markets 250000)
scale *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    exec python benchmarks/scale.py {{ARGS}}

# Build the Docker image kalshi:latest (without Docker: the wheel, into dist/)
build:
    #!/usr/bin/env bash
    set -euo pipefail
    source scripts/just-env.sh
    if [ -n "$KALSHI_DOCKER" ]; then
        docker build -t kalshi:latest .
    else
        no_docker "building the wheel into dist/ instead of the image"
        python -m pip wheel --no-deps --quiet -w dist .
        ls dist/*.whl
    fi

# Remove build output and ALL local data (compose volumes, or .kalshi/ servers and recordings)
clean:
    #!/usr/bin/env bash
    set -euo pipefail
    source scripts/just-env.sh
    rm -rf dist build htmlcov .coverage coverage.xml .pytest_cache
    if [ -n "$KALSHI_DOCKER" ]; then
        docker compose --profile monitoring --profile app down -v
    else
        no_docker "stopping the local servers and deleting .kalshi/{pg,s3,prometheus,spool,journal,dead-letter}"
        python scripts/local_services.py s3 down
        python scripts/local_services.py prometheus down
        kalshi db down
        rm -rf .kalshi/pg .kalshi/s3 .kalshi/prometheus .kalshi/spool .kalshi/journal .kalshi/dead-letter
    fi
