"""Configuration: YAML with ``${VAR}`` / ``${VAR:-default}`` -> attrs frozen classes.

Accepts the seed's ``gatherer.yaml`` and ``deduplicator.yaml`` shapes. Variables come from
the environment, then from the ``.env`` file beside the config, then from the ``.env`` of the
working directory: the first that defines a variable wins (:func:`env_files` gives the order).
Every problem is reported as one line naming the key path (never the value of a key that
holds a secret, nor a value longer than :data:`SHOWN_CHARS`), e.g.::

    websocket.reconnect_backoff: expected a duration like 500ms, 5s or 5m, got 'soon'
    metrics.prot: unknown key
    kalshi.api_key: environment variable KALSHI_API_KEY is not set

and raised together as one :class:`~kalshi.errors.ConfigError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import attrs
import cattrs
import yaml
from attrs import field, frozen
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from dotenv import dotenv_values

from kalshi.errors import ConfigError
from kalshi.models.paths import REST_ROOT, WS_PATH

__all__ = [
    "DbConfig",
    "DedupConfig",
    "GathererConfig",
    "GathererSource",
    "HttpConfig",
    "JournalConfig",
    "KalshiConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ProductionConfig",
    "S3Config",
    "SnapshotPollerConfig",
    "SpoolConfig",
    "StoreConfig",
    "SyncConfig",
    "WebsocketConfig",
    "WriterConfig",
    "WritersConfig",
    "config_kind",
    "env_files",
    "load_config",
    "load_dedup_config",
    "load_env_file",
    "load_gatherer_config",
    "parse_duration",
    "parse_size_bytes",
]


class Duration(float):
    """Seconds, written in config as ``500ms``, ``1s``, ``5m``, ``1h`` or a bare number."""


class ByteSize(int):
    """Bytes, written as ``64MiB``, ``1GB``, ``512k`` or a bare number."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {
    None: 1.0,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_BYTES = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)


def parse_duration(value: object) -> Duration:
    """``"500ms"`` -> 0.5; raises ``ValueError`` with the expected form."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 500ms, 5s or 5m, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a non-negative duration, got {value!r}")
        return Duration(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration like 500ms, 5s or 5m, got {value!r}")
    return Duration(float(match[1]) * _DURATION_UNITS[match[2]])


def parse_size_bytes(value: object) -> ByteSize:
    """``"64MiB"`` -> 67108864."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return ByteSize(value)
    match = _BYTES.match(str(value))
    if not match:
        raise ValueError(f"expected a size like 64MiB or 1GB, got {value!r}")
    unit = (match[2] or "b").lower()
    power = "bkmgt".index(unit[0])
    base = 1024 if "i" in unit or len(unit) == 1 else 1000
    return ByteSize(int(match[1]) * base**power)


# --- the shapes ---------------------------------------------------------------------------


def _url_scheme(url: str) -> str:
    """The scheme of ``url`` when it also names a host, else ``""``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        return ""
    return parts.scheme.lower() if parts.hostname else ""


def _with_path(url: str, path: str, schemes: tuple[str, str]) -> str:
    """``url`` with the protocol's ``path`` (kalshi-api.md §1) when it has none
    (``wss://api.elections.kalshi.com``, as the seed's ``.env`` writes it); other URLs, and
    text that is not a URL of ``schemes`` (rejected later, by :data:`_RULES`), as given."""
    if _url_scheme(url) not in schemes:
        return url
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return url
    return urlunsplit(parts._replace(path=path))


def _rest_url(url: str) -> str:
    return _with_path(url, REST_ROOT, ("http", "https"))


def _ws_url(url: str) -> str:
    return _with_path(url, WS_PATH, ("ws", "wss"))


@frozen
class KalshiConfig:
    rest_url: str = field(
        default="https://external-api.kalshi.com/trade-api/v2", converter=_rest_url
    )
    ws_url: str = field(
        default="wss://external-api-ws.kalshi.com/trade-api/ws/v2", converter=_ws_url
    )
    api_key: str = ""
    # A PEM file path, inline PEM text, or env:NAME. Never logged.
    api_secret: str = field(default="", repr=False)
    # REST read budget (requests/s) we allow ourselves; Basic tier = 20.
    rest_rate_limit: float = 10.0
    request_timeout: Duration = Duration(10.0)


@frozen
class WebsocketConfig:
    ticker_connections: int = 2
    trade_connections: int = 2
    lifecycle_connections: int = 2
    orderbook_connections: int = 144
    reconnect_backoff: Duration = Duration(1.0)
    max_reconnect_backoff: Duration = Duration(30.0)
    # Declared dead when nothing (data or pong) arrives for this long.
    silence_timeout: Duration = Duration(5.0)
    ping_interval: Duration = Duration(2.0)
    # Markets per update_subscription command (the exchange's cap is unpublished).
    markets_per_command: int = 256
    # Subscription commands per second per connection (the exchange allows 10 000 per
    # session; pacing keeps the replies and snapshots of a (re)subscription from bursting).
    commands_per_second: float = 20.0
    # A command (subscribe, update_subscription) without a reply for this long ends the
    # session.
    command_timeout: Duration = Duration(10.0)
    # Markets the exchange refused (error 26 with no connection to take them, or another
    # refusal) are tried again after this long.
    refusal_retry: Duration = Duration(60.0)
    # A book crossed (YES bid >= YES ask) for more than this many of its frames is
    # resnapshotted (each cross is counted and a book_invalid gap row).
    crossed_book_frames: int = 2
    max_frame_bytes: ByteSize = ByteSize(16 * 1024 * 1024)
    transport: str = "websockets"
    # Bytes the whole-exchange connections (ticker, trade, lifecycle) together read ahead
    # of their processing (a frame's text plus what holding it costs,
    # kalshi.gather.read_ahead), so a burst's backlog waits in our memory, not in the
    # exchange's buffer for the subscription (error 25 when it overflows); 0: one loop
    # reads and processes, as every per-market connection does (docs/scaling.md, "Bursts",
    # "The memory budget").
    read_ahead_bytes: ByteSize = ByteSize(40 * 1024 * 1024)


@frozen
class DbConfig:
    # Empty: start (or reuse) the embedded PostgreSQL under data_dir.
    url: str = ""
    max_connections: int = 5
    data_dir: str = ".kalshi/pg"
    # Bounds on every write statement: a hung server or a locked table fails the write
    # (retried, rows spooled) within this long instead of holding it forever. 0 = none.
    statement_timeout: Duration = Duration(30.0)
    lock_timeout: Duration = Duration(5.0)


@frozen
class WriterConfig:
    batch_size: int = 1000
    flush_interval: Duration = Duration(1.0)


SEED_WRITER_KEYS = {"orderbook": "orderbook_deltas", "snapshots": "orderbook_snapshots"}
"""The seed's writer keys (its guide's ``writers.orderbook``, ``writers.snapshots``) and the
table each one writes: a seed config loads unchanged, its key read as the table's name."""

RENAMED_KEYS = {"writers.lifecycle": "writers.market_lifecycle"}
"""Keys of ours renamed to their table's name (issue 21); a config still using one is told
the new name."""


def _seed_writer_keys(data: Any, problems: list[str]) -> Any:
    """``data`` with each :data:`SEED_WRITER_KEYS` key under ``writers`` read as its table's
    name; both spellings of one writer in a config is a problem (which one would win?)."""
    writers = data.get("writers") if isinstance(data, dict) else None
    if not isinstance(writers, dict) or not writers.keys() & SEED_WRITER_KEYS.keys():
        return data
    renamed = dict(writers)
    for seed, table in SEED_WRITER_KEYS.items():
        if seed not in renamed:
            continue
        value = renamed.pop(seed)
        if table in renamed:
            problems.append(f"writers.{seed}: the same writer as writers.{table}; keep one")
        else:
            renamed[table] = value
    return {**data, "writers": renamed}


@frozen
class WritersConfig:
    """One writer per table, each key named as its table (``writers.orderbook_deltas``)."""

    # Batches of thousands: a COPY + commit per 100-500 rows cost 0.3-0.7 of the rate at 5 000
    # (docs/performance.md, benchmarks/writer.py); flush_interval still bounds the latency.
    trades: WriterConfig = WriterConfig(1000, Duration(1.0))
    orderbook_deltas: WriterConfig = WriterConfig(5000, Duration(0.5))
    tickers: WriterConfig = WriterConfig(1000, Duration(1.0))
    orderbook_snapshots: WriterConfig = WriterConfig(1000, Duration(1.0))
    market_lifecycle: WriterConfig = WriterConfig(100, Duration(1.0))
    markets: WriterConfig = WriterConfig(1000, Duration(2.0))
    gaps: WriterConfig = WriterConfig(10, Duration(1.0))


@frozen
class SpoolConfig:
    dir: str = ".kalshi/spool"
    # Rows in sealed batches held in memory, all tables together, before batches spill to
    # disk (docs/scaling.md, "The memory budget").
    memory_rows: int = 20_000
    dead_letter_dir: str = ".kalshi/dead-letter"


@frozen
class SnapshotPollerConfig:
    enabled: bool = True
    interval: Duration = Duration(900.0)
    max_markets: int | None = None
    # REST requests of a pass in flight at once: the rate limit, not their latency, bounds
    # a pass (docs/scaling.md, "The snapshot poller").
    in_flight: int = 16
    # How long after its reply a REST answer the live book has not matched is waited on
    # (the deltas still on their way, kalshi-api.md §4.5) before it is a difference: a
    # book_invalid gap row, the book resnapshotted, the ingest watermark released.
    settle_after: Duration = Duration(5.0)


@frozen
class JournalConfig:
    enabled: bool = True
    dir: str = ".kalshi/journal"
    rotate_bytes: ByteSize = ByteSize(256 * 1024 * 1024)
    rotate_interval: Duration = Duration(3600.0)
    compress: bool = True
    upload: bool = False
    # Journal bytes held in memory (buffered + being written) before the connections stop
    # reading their sockets until the disk catches up.
    max_buffer: ByteSize = ByteSize(32 * 1024 * 1024)


@frozen
class LoggingConfig:
    level: str = "info"
    format: str = "text"


@frozen
class MetricsConfig:
    enabled: bool = True
    port: int = 9090
    host: str = "127.0.0.1"


@frozen
class HttpConfig:
    """``/health`` and ``/debug/*``; port 0 disables."""

    port: int = 8080
    host: str = "127.0.0.1"
    debug_endpoints: bool = True


@frozen
class S3Config:
    enabled: bool = False
    endpoint: str = ""
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    bucket: str = "kalshi-data-local"
    region: str = "us-east-1"
    prefix: str = "raw/"
    # When set (and enabled), export to this local directory instead of S3.
    local_dir: str = ""
    window: Duration = Duration(3600.0)


@frozen
class GathererConfig:
    kalshi: KalshiConfig = KalshiConfig()
    mode: str = "local"
    gatherer_id: str = "local-1"
    websocket: WebsocketConfig = WebsocketConfig()
    timescaledb: DbConfig = DbConfig()
    writers: WritersConfig = WritersConfig()
    spool: SpoolConfig = SpoolConfig()
    snapshot_poller: SnapshotPollerConfig = SnapshotPollerConfig()
    journal: JournalConfig = JournalConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    http: HttpConfig = HttpConfig()
    s3_export: S3Config = S3Config()
    shard: str = "0/1"
    # Re-list all markets over REST this often (catches missed lifecycle events).
    relist_interval: Duration = Duration(300.0)
    # Grace period for the final flush on Ctrl-C / SIGTERM.
    shutdown_grace: Duration = Duration(10.0)

    @property
    def store(self) -> StoreConfig:
        """The store's section of this config (:class:`StoreConfig`)."""
        return StoreConfig(
            gatherer_id=self.gatherer_id,
            database=self.timescaledb,
            writers=self.writers,
            spool=self.spool,
            shutdown_grace=self.shutdown_grace,
        )


@frozen
class StoreConfig:
    """What the store (:func:`kalshi.store.open_store`) needs, and no more: whose rows it
    writes, its database's connections and statement bounds, the batch writers, the spool
    and the shutdown grace. Not a YAML section of its own: :attr:`GathererConfig.store`
    gathers it from the gatherer's keys (``gatherer_id``, ``timescaledb``, ``writers``,
    ``spool``, ``shutdown_grace``)."""

    gatherer_id: str = "local-1"
    database: DbConfig = DbConfig()
    writers: WritersConfig = WritersConfig()
    spool: SpoolConfig = SpoolConfig()
    shutdown_grace: Duration = Duration(10.0)


@frozen
class GathererSource:
    id: str
    timescaledb: str


@frozen
class ProductionConfig:
    url: str = ""
    max_connections: int = 5


@frozen
class SyncConfig:
    poll_interval: Duration = Duration(1.0)
    batch_size: int = 100
    # Never wait for a lagging gatherer longer than this.
    max_lag: Duration = Duration(30.0)
    # Bounds on every statement the deduplicator runs, on production and on the gatherers'
    # databases: a hung server or a locked table fails the pass (retried at the next poll)
    # within this long instead of holding it forever. 0 = none.
    statement_timeout: Duration = Duration(60.0)
    lock_timeout: Duration = Duration(5.0)


@frozen
class DedupConfig:
    mode: str = "local"
    gatherers: tuple[GathererSource, ...] = ()
    production: ProductionConfig = ProductionConfig()
    s3_export: S3Config = S3Config()
    sync: SyncConfig = SyncConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig(port=9091)
    http: HttpConfig = HttpConfig(port=8081)
    shutdown_grace: Duration = Duration(10.0)


# --- loading --------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
_EXPECT = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    Duration: "a duration like 500ms, 5s or 5m",
    ByteSize: "a size like 64MiB",
}


def load_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a ``.env`` file, parsed by python-dotenv (comments, ``export``,
    quotes and escapes as it defines them); ``{}`` when the file does not exist. A key with no
    value (``KEY`` alone) is left out."""
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def env_files(config_dir: Path) -> list[Path]:
    """The ``.env`` files read for a config in ``config_dir``, highest precedence first: the
    one beside the config, then the working directory's (once if they are the same file)."""
    files = [config_dir / ".env", Path.cwd() / ".env"]
    if files[0].resolve() == files[1].resolve():
        return files[:1]
    return files


def _substitute(node: Any, env: Mapping[str, str], path: str, problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {
            k: _substitute(v, env, f"{path}.{k}" if path else str(k), problems)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_substitute(v, env, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        name, default = match[1], match[2]
        if name in env and (env[name] != "" or default is None):
            return env[name]
        if default is not None:
            return default
        problems.append(f"{path}: environment variable {name} is not set")
        return ""

    whole = _VAR.fullmatch(node) is not None
    text = _VAR.sub(replace, node)
    if whole and text:
        # A value that is exactly ${VAR} takes the YAML type of what it expands to.
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text
    return text


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

    def strict(kind: type, check: Any) -> None:
        def hook(value: Any, _: type) -> Any:
            if not check(value):
                raise ValueError(f"expected {_EXPECT[kind]}, got {value!r}")
            return value if kind is not float else float(value)

        conv.register_structure_hook(kind, hook)

    strict(bool, lambda v: isinstance(v, bool))
    strict(int, lambda v: isinstance(v, int) and not isinstance(v, bool))
    strict(float, lambda v: isinstance(v, int | float) and not isinstance(v, bool))
    strict(str, lambda v: isinstance(v, str | int | float) and not isinstance(v, bool))
    conv.register_structure_hook(Duration, lambda v, _: parse_duration(v))
    conv.register_structure_hook(ByteSize, lambda v, _: parse_size_bytes(v))
    conv.register_structure_hook(str, lambda v, _: _as_str(v))
    return conv


def _as_str(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a string, got {value!r}")
    return str(value)


def _describe(exc: BaseException, path: str, out: list[str]) -> None:
    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without_notes = exc.group_exceptions()
        for sub in without_notes:
            _describe(sub, path, out)
        for sub, note in with_notes:
            name = getattr(note, "name", None)
            index = getattr(note, "index", None)
            if name is not None:
                sub_path = f"{path}.{name}" if path else name
            elif index is not None:
                sub_path = f"{path}[{index}]"
            else:
                sub_path = path
            _describe(sub, sub_path, out)
    elif isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            full = f"{path + '.' if path else ''}{key}"
            renamed = RENAMED_KEYS.get(full)
            out.append(f"{full}: unknown key" + (f" (now {renamed})" if renamed else ""))
    elif isinstance(exc, KeyError):
        out.append(f"{path}: required key is missing")
    elif isinstance(exc, ValueError | TypeError):
        message = str(exc)
        if not message.startswith("expected"):
            message = f"expected a mapping of known keys, got a bad value ({message})"
        out.append(f"{path or '(top level)'}: {message}")
    else:
        out.append(f"{path}: {exc}")


T = TypeVar("T")


def load_config(
    path: str | Path | None,
    kind: type[T],
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Load ``kind`` (``GathererConfig`` or ``DedupConfig``) from YAML at ``path``.

    ``None`` gives the defaults. Raises :class:`ConfigError` with every problem found.
    """
    data: Any = {}
    base = Path.cwd()
    if path is not None:
        file = Path(path)
        base = file.parent
        data = _read_mapping(file)
        other = _other_kind(data, kind)
        if other is not None:
            keys = ", ".join(sorted(set(data) - _fields(kind)))
            raise ConfigError(
                f"{file}: a {_LABELS[other]} config (its keys {keys}), not a {_LABELS[kind]}"
                f" config; `kalshi config check {file}` checks either kind"
            )
    merged: dict[str, str] = {}
    for candidate in reversed(env_files(base)):  # lowest precedence first, later ones win
        merged.update(load_env_file(candidate))
    merged.update(os.environ if env is None else env)
    problems: list[str] = []
    data = _substitute(data, merged, "", problems)
    data = _seed_writer_keys(data, problems)
    if overrides:
        data = _merge(data, overrides)
    try:
        value = _converter().structure(data, kind)
    except Exception as exc:
        _describe(exc, "", problems)
        value = None
    if problems:
        raise ConfigError([_redact(p) for p in problems])
    problems.extend(_check(value))
    if problems:
        raise ConfigError([_redact(p) for p in problems])
    return value  # type: ignore[return-value]  # checked above


# Keys whose values are credentials: a problem with one never shows the value.
SECRET_KEYS = frozenset({"api_key", "api_secret", "access_key", "secret_key", "password"})
# Longer values are never echoed (a PEM key or a pasted blob in the wrong key).
SHOWN_CHARS = 40
_GOT = re.compile(r"^(?P<path>[^:]*): (?P<head>.*?), got (?P<value>.*)$", re.DOTALL)
_URL_PASSWORD = re.compile(r"(//[^/:@\s]*):[^@/\s]*@")


def _redact(problem: str) -> str:
    """``problem`` without secrets: the value of a key in :data:`SECRET_KEYS` or any value
    longer than :data:`SHOWN_CHARS` is replaced by its length; URL passwords by ``***``."""
    problem = _URL_PASSWORD.sub(r"\1:***@", problem)
    match = _GOT.match(problem)
    if match is None:
        return problem
    leaf = re.split(r"[.\[]", match["path"])[-1]
    value = match["value"]
    if leaf in SECRET_KEYS:
        shown = "a value that is not shown (the key holds a secret)"
    elif len(value) > SHOWN_CHARS:
        shown = f"a value of {len(value)} characters (not shown)"
    else:
        return problem
    return f"{match['path']}: {match['head']}, got {shown}"


def _merge(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``{"a.b": v}`` dotted overrides (from command-line flags)."""
    out = dict(data)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.get(key)
            child = dict(child) if isinstance(child, dict) else {}
            node[key] = child
            node = child
        node[leaf] = value
    return out


MODES = ("local", "production")
_SAFE_ID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,63}")


def _check(value: Any) -> list[str]:
    problems: list[str] = []
    if isinstance(value, GathererConfig):
        ws = value.websocket
        for name in (
            "ticker_connections",
            "trade_connections",
            "lifecycle_connections",
            "orderbook_connections",
        ):
            # the order-book and trade channels are the record itself: none is no recorder
            least = 1 if name in ("trade_connections", "orderbook_connections") else 0
            if getattr(ws, name) < least:
                problems.append(
                    f"websocket.{name}: expected an integer >= {least}, got {getattr(ws, name)}"
                )
        if ws.max_reconnect_backoff < ws.reconnect_backoff:
            problems.append("websocket.max_reconnect_backoff: must be >= reconnect_backoff")
        if ws.silence_timeout <= ws.ping_interval:
            # a quiet healthy connection hears only pongs, one per ping_interval
            problems.append(
                "websocket.silence_timeout: must be > ping_interval (a quiet healthy connection"
                f" hears one pong per ping), got {float(ws.silence_timeout):g}s <="
                f" {float(ws.ping_interval):g}s"
            )
        if ws.transport not in ("websockets", "trio-websocket"):
            problems.append("websocket.transport: expected websockets or trio-websocket")
        if not re.fullmatch(r"\d+/\d+", value.shard) or not (
            0 <= int(value.shard.split("/")[0]) < int(value.shard.split("/")[1])
        ):
            problems.append(f"shard: expected i/n with 0 <= i < n, got {value.shard!r}")
        if not _SAFE_ID.fullmatch(value.gatherer_id):
            # it names journal files and directories: no separators, no "..", no spaces
            problems.append(
                "gatherer_id: expected 1-64 of A-Z a-z 0-9 _ . - (not starting with a dot),"
                f" got {value.gatherer_id!r}"
            )
        if value.mode == "production" and not value.timescaledb.url:
            problems.append(
                "timescaledb.url: required in production mode (local mode starts an embedded"
                " PostgreSQL when it is empty)"
            )
    if isinstance(value, DedupConfig):
        seen: dict[str, int] = {}
        for index, source in enumerate(value.gatherers):
            if source.id in seen:
                problems.append(
                    f"gatherers[{index}].id: {source.id!r} repeats gatherers[{seen[source.id]}].id"
                )
            seen.setdefault(source.id, index)
    if isinstance(value, GathererConfig | DedupConfig):
        if value.mode not in MODES:
            problems.append(f"mode: expected local or production, got {value.mode!r}")
        level, form = value.logging.level, value.logging.format
        if level.lower() not in ("debug", "info", "warning", "error"):
            problems.append(f"logging.level: expected debug, info, warning or error, got {level!r}")
        if form not in ("text", "json"):
            problems.append(f"logging.format: expected text or json, got {form!r}")
        problems.extend(_check_ranges(value, ""))
        http, metrics = value.http, value.metrics
        shared = metrics.enabled and http.port != 0 and http.port == metrics.port
        if shared and http.host != metrics.host:  # one server answers both on one port
            problems.append(
                f"metrics.host: must equal http.host ({http.host}) when both use port {http.port}"
            )
    return problems


# The range or shape of a value, by its key's name wherever the key appears: (accepts the
# value, what is expected). Types are checked before (cattrs); these are what a type cannot
# say. A problem reads ``metrics.port: expected a port 0-65535 (0 disables), got 99999``.
_POSITIVE_COUNT = (lambda v: v is None or v >= 1, "an integer >= 1")
_POSITIVE_DURATION = (lambda v: v > 0, "a duration > 0")
_POSITIVE_SIZE = (lambda v: v >= 1, "a size of at least 1 byte")
_DB_URL = (
    lambda v: v == "" or _url_scheme(v) in ("postgres", "postgresql") or "=" in v,
    "a postgresql://user@host:port/database URL (or a libpq key=value string)",
)
_RULES: dict[str, tuple[Any, str]] = {
    "port": (lambda v: 0 <= v <= 65535, "a port 0-65535 (0 disables)"),
    "host": (lambda v: v != "", "a host name or address"),
    "rest_url": (lambda v: _url_scheme(v) in ("http", "https"), "an http:// or https:// URL"),
    "ws_url": (lambda v: _url_scheme(v) in ("ws", "wss"), "a ws:// or wss:// URL"),
    "endpoint": (lambda v: v == "" or _url_scheme(v) in ("http", "https"), "an http(s):// URL"),
    "url": _DB_URL,
    "timescaledb": _DB_URL,  # a gatherer source of the deduplicator
    "rest_rate_limit": (lambda v: v > 0, "a number > 0"),
    "commands_per_second": (lambda v: v > 0, "a number > 0"),
    "max_connections": _POSITIVE_COUNT,
    "batch_size": _POSITIVE_COUNT,
    "max_markets": _POSITIVE_COUNT,
    "in_flight": _POSITIVE_COUNT,
    "markets_per_command": _POSITIVE_COUNT,
    "crossed_book_frames": _POSITIVE_COUNT,
    "memory_rows": (lambda v: v >= 0, "an integer >= 0"),
    "read_ahead_bytes": (lambda v: v >= 0, "a size >= 0 (0: no read-ahead)"),
    "max_frame_bytes": _POSITIVE_SIZE,
    "rotate_bytes": _POSITIVE_SIZE,
    "max_buffer": _POSITIVE_SIZE,
    "request_timeout": _POSITIVE_DURATION,
    "silence_timeout": _POSITIVE_DURATION,
    "ping_interval": _POSITIVE_DURATION,
    "command_timeout": _POSITIVE_DURATION,
    "flush_interval": _POSITIVE_DURATION,
    "interval": _POSITIVE_DURATION,
    "rotate_interval": _POSITIVE_DURATION,
    "window": _POSITIVE_DURATION,
    "poll_interval": _POSITIVE_DURATION,
    "relist_interval": _POSITIVE_DURATION,
}


def _check_ranges(node: Any, path: str) -> list[str]:
    """Every key of ``node`` (an attrs instance, nested) against :data:`_RULES`."""
    problems: list[str] = []
    for item in attrs.fields(type(node)):
        value = getattr(node, item.name)
        where = f"{path}.{item.name}" if path else item.name
        if attrs.has(type(value)):
            problems.extend(_check_ranges(value, where))
        elif isinstance(value, tuple):
            for index, element in enumerate(value):
                if attrs.has(type(element)):
                    problems.extend(_check_ranges(element, f"{where}[{index}]"))
        elif item.name in _RULES and not isinstance(value, bool):
            accepts, expected = _RULES[item.name]
            if not accepts(value):
                shown = float(value) if isinstance(value, Duration) else value
                problems.append(f"{where}: expected {expected}, got {shown!r}")
    return problems


_LABELS: dict[type, str] = {GathererConfig: "gatherer", DedupConfig: "deduplicator"}


def _fields(kind: type) -> set[str]:
    return {a.name for a in attrs.fields(kind)}


def _other_kind(data: Mapping[str, Any], kind: type) -> type | None:
    """The other kind of config (gatherer, deduplicator) when ``data``'s top-level keys
    are all that kind's and some are not ``kind``'s: a file given to the wrong command."""
    if kind not in _LABELS:
        return None
    (other,) = (k for k in _LABELS if k is not kind)
    keys = set(data)
    unknown = keys - _fields(kind)
    return other if unknown and keys <= _fields(other) else None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong and where, 1-based, as it reports it (``problem_mark``), and
    the construct it was reading (``context_mark``), e.g. ``line 3, column 1: not valid
    YAML: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence at
    line 2, column 13)`` for an unclosed ``[``."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"not valid YAML: {exc}"
    mark, problem = exc.problem_mark, exc.problem or "no reason given"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    text = f"{where}not valid YAML: {problem}"
    if exc.context and exc.context_mark is not None:
        at = exc.context_mark
        text += f" ({exc.context} at line {at.line + 1}, column {at.column + 1})"
    elif exc.context:
        text += f" ({exc.context})"
    return text


def _read_mapping(file: Path) -> dict[str, Any]:
    """The YAML mapping in ``file``; raises :class:`ConfigError` naming the file when it
    cannot be read, is not YAML (with its line) or is not a mapping at the top level."""
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level")
    return data


def config_kind(path: str | Path) -> type[GathererConfig] | type[DedupConfig] | None:
    """Which config the YAML at ``path`` is, by its top-level keys: :class:`DedupConfig`
    when it has a key only a deduplicator config has (``gatherers``, ``production``,
    ``sync``), :class:`GathererConfig` when it has one only a gatherer config has, ``None``
    when neither (only shared keys: either would load it). Raises :class:`ConfigError`
    when the file cannot be read or is not a YAML mapping."""
    data = _read_mapping(Path(path))
    keys = set(data)
    if keys & (_fields(DedupConfig) - _fields(GathererConfig)):
        return DedupConfig
    if keys & (_fields(GathererConfig) - _fields(DedupConfig)):
        return GathererConfig
    return None


def load_gatherer_config(path: str | Path | None, **kwargs: Any) -> GathererConfig:
    return load_config(path, GathererConfig, **kwargs)


def load_dedup_config(path: str | Path | None, **kwargs: Any) -> DedupConfig:
    return load_config(path, DedupConfig, **kwargs)
