"""The key tables of docs/configuration.md, from the attrs classes of kalshi/config.py.

    python scripts/config_docs.py          rewrite the tables in docs/configuration.md

Defaults, types and units come from the classes; the descriptions from ``DESCRIPTIONS``
below. tests/ops/test_config_docs.py fails when a key has no description or the file is
not what this script writes.
"""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import attrs

from kalshi.config import SEED_WRITER_KEYS, ByteSize, DedupConfig, Duration, GathererConfig

DOC = Path(__file__).resolve().parents[1] / "docs/configuration.md"

DESCRIPTIONS: dict[str, str] = {
    # kalshi
    "kalshi.rest_url": "REST API base URL (prod; demo or the simulator for tests); with no"
    " path (`https://host`) it gets `/trade-api/v2`",
    "kalshi.ws_url": "WebSocket URL; with no path (`wss://host`, as the seed's `.env`) it gets"
    " `/trade-api/ws/v2`. A handshake answered HTTP 404 before any session is a configuration"
    " error (`error:` line, exit 1), not retried",
    "kalshi.api_key": "API key id (`KALSHI-ACCESS-KEY`)",
    "kalshi.api_secret": "RSA private key: a PEM file path, inline PEM text, or `env:NAME`; "
    "never logged",
    "kalshi.rest_rate_limit": "REST requests per second we allow ourselves (Basic tier: 20)",
    "kalshi.request_timeout": "timeout of one REST request",
    # top level
    "mode": "`local` or `production`; production refuses to start without a database URL "
    "(local starts the embedded PostgreSQL when it is empty)",
    "gatherer_id": "this gatherer's name, stored in every row and journal file",
    "shard": (
        "`i/n`: record only the events whose ticker's BLAKE2b hash modulo n is i (docs/scaling.md)"
    ),
    "relist_interval": (
        "re-list the markets not finalized over REST this often (catches missed lifecycle)"
    ),
    "shutdown_grace": "on Ctrl-C or SIGTERM, how long the final flush may take",
    # websocket
    "websocket.ticker_connections": ("connections carrying the `ticker` channel (0: not recorded)"),
    "websocket.trade_connections": (
        "connections carrying the `trade` channel; at least 1 (0 is a config error: exit 2)"
    ),
    "websocket.lifecycle_connections": (
        "connections carrying the lifecycle channels (0: markets are learnt at the re-list only)"
    ),
    "websocket.orderbook_connections": (
        "connections carrying `orderbook_delta`; markets are spread over them; at least 1 "
        "(0 is a config error: exit 2)"
    ),
    "websocket.reconnect_backoff": "first reconnect delay (doubles, with jitter)",
    "websocket.max_reconnect_backoff": "reconnect delay cap",
    "websocket.silence_timeout": "a connection with nothing received (data or pong) for this "
    "long is dead",
    "websocket.ping_interval": "client ping interval",
    "websocket.markets_per_command": "markets per `subscribe` / `update_subscription` command",
    "websocket.commands_per_second": "subscription commands per second per connection "
    "(paces a (re)subscription; the exchange allows 10 000/s per session)",
    "websocket.crossed_book_frames": (
        "a book crossed (YES bid >= YES ask) for more than this many of its frames is "
        "resnapshotted; each cross is counted and a `book_invalid` gap row"
    ),
    "websocket.command_timeout": "a command without a reply for this long ends the session",
    "websocket.refusal_retry": (
        "markets the exchange refused (error 26 with no connection to take them, or another "
        "refusal; a `subscription_refused` gap each) are tried again after this long"
    ),
    "websocket.max_frame_bytes": "largest WebSocket message accepted",
    "websocket.read_ahead_bytes": (
        "bytes the whole-exchange connections (`ticker`, `trade`, lifecycle) together read "
        "ahead of their processing (a frame counts its text plus 208 B of holding it), each "
        "in a task of its own taking what the kernel holds each turn of the event loop, so "
        "when the gatherer is short of CPU (a burst) or a writer's queue is full the backlog "
        "waits in its memory, not in the exchange's buffer for the subscription, whose "
        "overflow ends it (error 25); one limit for all of them, so the gatherer's memory "
        "bound holds (docs/scaling.md, *The memory budget*); 0: one loop reads and "
        "processes, as on every per-market connection (docs/scaling.md, *Bursts*)"
    ),
    "websocket.transport": "`websockets` (default) or `trio-websocket` (see docs/performance.md)",
    # timescaledb
    "timescaledb.url": "PostgreSQL/TimescaleDB URL; empty starts the embedded PostgreSQL",
    "timescaledb.max_connections": "database connections of the writers",
    "timescaledb.data_dir": "data directory of the embedded PostgreSQL; its port, chosen at"
    " first start, is kept there (`kalshi.conf`), so the URL survives `kalshi db down` /"
    " `db up` (a port taken by another process is an error)",
    "timescaledb.statement_timeout": "longest a write statement may run before it fails"
    " (retried, rows spooled); a hung server is noticed within it; 0 = no bound",
    "timescaledb.lock_timeout": "longest a write waits for a table lock (`LOCK TABLE`) before"
    " the database counts as unavailable; 0 = no bound",
    # spool
    "spool.dir": "where batches wait on disk while the database is down",
    "spool.memory_rows": (
        "rows held in memory, all tables together, before batches spill to disk; with the"
        " spool disk refusing too, twice that before the writers stop taking rows"
    ),
    "spool.dead_letter_dir": "rows the database rejected, with the error",
    # snapshot poller
    "snapshot_poller.enabled": "poll REST order books to cross-check the live books",
    "snapshot_poller.interval": "a round of REST order books starts this often, the first one"
    " interval after the start (100 markets per request: a round over 250 000 markets takes"
    " 250 s at `rest_rate_limit: 10`); a round longer than the interval is logged and the next"
    " starts when it ends, never two at once",
    "snapshot_poller.max_markets": "poll at most this many markets (empty: all)",
    "snapshot_poller.in_flight": "requests of a round in flight at once (`rest_rate_limit` stays"
    " the bound on requests per second; enough in flight that their latency is not: at least"
    " `rest_rate_limit` times the latency in seconds)",
    "snapshot_poller.settle_after": "a REST book the live book has not matched at its reply is"
    " waited on this long for the deltas still on their way (a REST book has no `seq`); then"
    " it is a difference: a `book_invalid` gap row from the request's send, the book"
    " resnapshotted, and the ingest watermark (held at the send meanwhile) released",
    # journal
    "journal.enabled": "write every frame to the raw journal before decoding it",
    "journal.dir": "journal directory (`<dir>/<gatherer>/<date>/...`)",
    "journal.rotate_bytes": "start a new journal file after this many bytes",
    "journal.rotate_interval": "start a new journal file after this long",
    "journal.compress": "zstd-compress journal files",
    "journal.upload": "upload closed journal files to `s3_export` (under its prefix)",
    "journal.max_buffer": "journal bytes in memory (buffered and being written) past which "
    "the connections stop reading their sockets until the disk catches up (TCP pushes back; "
    "`/health` journal.paused_connections, `kalshi_journal_reads_paused`)",
    # logging, metrics, http
    "logging.level": "`debug`, `info`, `warning` or `error`: kalshi's own loggers; other "
    "libraries log warnings and above only",
    "logging.format": "`text` (one line per record) or `json` (one JSON object per record)",
    "metrics.enabled": "serve Prometheus `/metrics`",
    "metrics.port": "port of `/metrics` (0 disables; equal to `http.port` shares one server)",
    "metrics.host": "address `/metrics` listens on (`0.0.0.0` in containers)",
    "http.port": "port of `/health` and `/debug/markets` (0 disables)",
    "http.host": "address `/health` listens on",
    "http.debug_endpoints": "serve `/debug/markets`",
    # s3
    "s3_export.enabled": "export (deduplicator) to S3 or `local_dir`",
    "s3_export.endpoint": "S3 endpoint URL (MinIO, SeaweedFS); empty: AWS",
    "s3_export.access_key": "S3 access key",
    "s3_export.secret_key": "S3 secret key; never logged",
    "s3_export.bucket": "bucket",
    "s3_export.region": "region",
    "s3_export.prefix": "key prefix (`raw/` -> `raw/<table>/date=YYYY-MM-DD/hour=HH/`)",
    "s3_export.local_dir": "export to this directory instead of S3 (same layout)",
    "s3_export.window": "export window: one Parquet partition per table per window",
    # dedup
    "gatherers": "the gatherer databases to merge, a list of `{id, timescaledb}`",
    "gatherers[].id": "the gatherer's `gatherer_id`",
    "gatherers[].timescaledb": "URL of that gatherer's database",
    "production.url": "URL of the production database (merged rows)",
    "production.max_connections": "database connections to production",
    "sync.poll_interval": "how often to look for new rows in the gatherers",
    "sync.batch_size": "rows per production transaction of the keyed tables (trades, tickers,"
    " lifecycle, REST snapshots, markets); they are read from a gatherer in steps of up to"
    " 20,000 rows (docs/dedup.md)",
    "sync.max_lag": "never wait for a lagging gatherer longer than this",
    "sync.statement_timeout": "longest any deduplicator statement (production or a gatherer's"
    " database) may run; the pass fails and is retried at the next poll; 0 = no bound",
    "sync.lock_timeout": "longest a deduplicator statement waits for a table lock before that"
    " database counts as unavailable (production: the pass is retried; a gatherer: skipped"
    " for the pass); 0 = no bound",
}
for _table in (
    "trades",
    "orderbook_deltas",
    "tickers",
    "orderbook_snapshots",
    "market_lifecycle",
    "markets",
    "gaps",
):
    DESCRIPTIONS[f"writers.{_table}.batch_size"] = f"rows per `{_table}` batch"
    DESCRIPTIONS[f"writers.{_table}.flush_interval"] = f"longest a `{_table}` row waits"
for _seed, _table in SEED_WRITER_KEYS.items():
    DESCRIPTIONS[f"writers.{_table}.batch_size"] += f" (seed key: `writers.{_seed}`)"


def _type_name(kind: Any) -> str:
    if kind is Duration:
        return "duration"
    if kind is ByteSize:
        return "size"
    if get_origin(kind) in (Union, types.UnionType):
        inner = [a for a in get_args(kind) if a is not type(None)]
        return f"{_type_name(inner[0])} or empty"
    if get_origin(kind) is tuple:
        return "list"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(kind, "?")


def _default(value: Any, kind: Any) -> str:
    if value is None:
        return "(empty)"
    if kind is Duration:
        return _duration(float(value))
    if kind is ByteSize:
        return _size(int(value))
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "`[]`" if not value else repr(value)
    if value == "":
        return '`""`'
    return f"`{value}`"


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"`{int(seconds // size)}{unit}`"
    return f"`{round(seconds * 1000)}ms`"


def _size(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size and count % size == 0:
            return f"`{count // size}{unit}`"
    return f"`{count}`"


def rows(cls: type, prefix: str = "", instance: Any = None) -> list[tuple[str, str, str]]:
    """(key, type, default) for every leaf key of ``cls``, defaults from ``instance``."""
    instance = cls() if instance is None else instance
    out: list[tuple[str, str, str]] = []
    hints = attrs.resolve_types(cls)
    for field in attrs.fields(hints):
        key = f"{prefix}{field.name}"
        value = getattr(instance, field.name)
        kind = field.type
        if attrs.has(kind):
            out.extend(rows(kind, f"{key}.", value))
        elif get_origin(kind) is tuple and attrs.has(get_args(kind)[0]):
            out.append((key, "list", "`[]`"))
            item = get_args(kind)[0]
            for sub in attrs.fields(attrs.resolve_types(item)):
                out.append((f"{key}[].{sub.name}", _type_name(sub.type), "(required)"))
        else:
            out.append((key, _type_name(kind), _default(value, kind)))
    return out


def table(cls: type) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default in rows(cls):
        lines.append(f"| `{key}` | {kind} | {default} | {DESCRIPTIONS.get(key, '')} |")
    return "\n".join(lines)


def render(text: str) -> str:
    """``text`` with the tables between the ``<!-- keys:NAME -->`` markers regenerated."""
    for name, cls in (("gatherer", GathererConfig), ("dedup", DedupConfig)):
        text = re.sub(
            rf"(<!-- keys:{name} -->\n)(?:.*?\n)?(<!-- /keys:{name} -->)",
            lambda m, cls=cls: m[1] + table(cls) + "\n" + m[2],
            text,
            flags=re.DOTALL,
        )
    return text


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text()))
    print(f"wrote {DOC}")
