# Sourced by the justfile's recipes: is Docker usable, and the defaults that follow from it.
# KALSHI_NO_DOCKER=1 forces the Docker-less path (embedded PostgreSQL, weed, local Prometheus).
if [ -z "${KALSHI_NO_DOCKER:-}" ] && docker info >/dev/null 2>&1 \
    && docker compose version >/dev/null 2>&1; then
    KALSHI_DOCKER=1
    : "${TIMESCALEDB_URL:=postgres://postgres:${POSTGRES_PASSWORD:-postgres}@localhost:5432/kalshi_ts}"
    export TIMESCALEDB_URL
else
    KALSHI_DOCKER=
fi

# One line on stderr saying what is used instead of Docker.
no_docker() { echo "no Docker: $*" >&2; }

# S3_* of the local S3 server started by `just up` (fails with a hint when it is not running:
# `eval "$(...)"` alone would go on without them, outside tester pbreak8 F8).
local_s3_env() {
    local found
    found=$(python scripts/local_services.py s3 env) || return 1
    eval "$found"
}

# Whether the embedded PostgreSQL (.kalshi/pg) is stopped (or not created yet).
embedded_pg_stopped() { kalshi db status 2>&1 | grep -q '^server: embedded, stopped'; }

# Stop the embedded PostgreSQL a recipe started (an EXIT trap; its exit code is kept).
stop_embedded_pg() { kalshi db down >&2 || true; }
