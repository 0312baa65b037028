"""Config loading: seed shapes, ${ENV} substitution, precise errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalshi.config import (
    DedupConfig,
    GathererConfig,
    StoreConfig,
    WritersConfig,
    env_files,
    load_config,
    load_dedup_config,
    load_gatherer_config,
    parse_duration,
    parse_size_bytes,
)
from kalshi.errors import ConfigError
from kalshi.models.rows import TABLE_COLUMNS

DATA = Path(__file__).parent.parent / "data"

SEED_GATHERER = """
kalshi:
  rest_url: ${KALSHI_API_URL}
  ws_url: ${KALSHI_WS_URL}
  api_key: ${KALSHI_API_KEY}
  api_secret: ${KALSHI_API_SECRET}
mode: local
gatherer_id: local-1
websocket:
  ticker_connections: 2
  trade_connections: 2
  lifecycle_connections: 2
  orderbook_connections: 144
  reconnect_backoff: 1s
  max_reconnect_backoff: 30s
timescaledb:
  url: ${TIMESCALEDB_URL}
  max_connections: 5
writers:
  trades:
    batch_size: 100
    flush_interval: 1s
  orderbook:
    batch_size: 500
    flush_interval: 500ms
  tickers:
    batch_size: 100
    flush_interval: 1s
  snapshots:
    batch_size: 10
    flush_interval: 5s
snapshot_poller:
  enabled: true
  interval: 5m
  max_markets: 50
logging:
  level: debug
  format: text
metrics:
  enabled: true
  port: ${METRICS_PORT:-9090}
"""

SEED_DEDUP = """
mode: local
gatherers:
  - id: local-1
    timescaledb: ${TIMESCALEDB_URL}
production:
  url: ${TIMESCALEDB_URL}
s3_export:
  enabled: true
  endpoint: ${S3_ENDPOINT}
  access_key: ${S3_ACCESS_KEY}
  secret_key: ${S3_SECRET_KEY}
  bucket: ${S3_BUCKET}
  region: us-east-1
sync:
  poll_interval: 1s
  batch_size: 100
logging:
  level: debug
  format: text
metrics:
  enabled: true
  port: 9091
"""

ENV = {
    "KALSHI_API_URL": "http://127.0.0.1:1/trade-api/v2",
    "KALSHI_WS_URL": "ws://127.0.0.1:1/trade-api/ws/v2",
    "KALSHI_API_KEY": "key",
    "KALSHI_API_SECRET": "/keys/k.pem",
    "TIMESCALEDB_URL": "postgres://postgres:postgres@localhost:5432/kalshi_ts",
    "S3_ENDPOINT": "http://localhost:9000",
    "S3_ACCESS_KEY": "minioadmin",
    "S3_SECRET_KEY": "minioadmin",
    "S3_BUCKET": "kalshi-data-local",
}


def test_seed_gatherer_shape(tmp_path: Path) -> None:
    path = tmp_path / "gatherer.yaml"
    path.write_text(SEED_GATHERER)
    cfg = load_gatherer_config(path, env=ENV)
    assert cfg.kalshi.rest_url == "http://127.0.0.1:1/trade-api/v2"
    assert cfg.websocket.orderbook_connections == 144
    assert cfg.websocket.max_reconnect_backoff == 30.0
    assert cfg.writers.orderbook_deltas.flush_interval == 0.5
    assert cfg.snapshot_poller.interval == 300.0
    assert cfg.snapshot_poller.max_markets == 50
    assert cfg.metrics.port == 9090
    assert cfg.timescaledb.url == ENV["TIMESCALEDB_URL"]
    assert "api_secret" not in repr(cfg.kalshi)


def test_urls_without_a_path_get_the_protocols_paths(tmp_path: Path) -> None:
    # Fresh-user finding 4: the seed's .env names the WebSocket by its host only.
    path = tmp_path / "gatherer.yaml"
    path.write_text(SEED_GATHERER)
    env = ENV | {
        "KALSHI_API_URL": "https://api.elections.kalshi.com/",
        "KALSHI_WS_URL": "wss://api.elections.kalshi.com",
    }
    cfg = load_gatherer_config(path, env=env)
    assert cfg.kalshi.rest_url == "https://api.elections.kalshi.com/trade-api/v2"
    assert cfg.kalshi.ws_url == "wss://api.elections.kalshi.com/trade-api/ws/v2"
    other = ENV | {"KALSHI_WS_URL": "ws://127.0.0.1:1/elsewhere"}
    assert load_gatherer_config(path, env=other).kalshi.ws_url == "ws://127.0.0.1:1/elsewhere"


def test_the_store_section_is_gathered_from_the_seed_keys(tmp_path: Path) -> None:
    # The store takes its own section, not the whole gatherer config; the YAML keys stay.
    path = tmp_path / "gatherer.yaml"
    path.write_text(SEED_GATHERER)
    cfg = load_gatherer_config(path, env=ENV)
    assert cfg.store == StoreConfig(
        gatherer_id=cfg.gatherer_id,
        database=cfg.timescaledb,
        writers=cfg.writers,
        spool=cfg.spool,
        shutdown_grace=cfg.shutdown_grace,
    )
    assert cfg.store.database.url == ENV["TIMESCALEDB_URL"]
    assert cfg.store.writers.orderbook_deltas.flush_interval == 0.5
    assert not hasattr(cfg.store, "kalshi")


def test_seed_dedup_shape(tmp_path: Path) -> None:
    path = tmp_path / "dedup.yaml"
    path.write_text(SEED_DEDUP)
    cfg = load_dedup_config(path, env=ENV)
    assert [(g.id, g.timescaledb) for g in cfg.gatherers] == [("local-1", ENV["TIMESCALEDB_URL"])]
    assert cfg.s3_export.bucket == "kalshi-data-local"
    assert cfg.sync.poll_interval == 1.0
    assert cfg.metrics.port == 9091


def test_env_file_and_defaults(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# comment\nexport METRICS_PORT=9999\nQUOTED='a b'\n")
    path = tmp_path / "g.yaml"
    path.write_text(
        "metrics:\n  port: ${METRICS_PORT:-1}\nkalshi:\n  api_key: ${QUOTED}\n"
        "mode: ${UNSET_MODE:-local}\n"
    )
    cfg = load_gatherer_config(path, env={})
    assert (cfg.metrics.port, cfg.kalshi.api_key, cfg.mode) == (9999, "a b", "local")


def test_env_files_have_one_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment, then the config's .env, then the working directory's: whatever the
    hash seed (the two paths were once iterated as a set)."""
    config_dir, cwd = tmp_path / "etc", tmp_path / "work"
    config_dir.mkdir()
    cwd.mkdir()
    (config_dir / ".env").write_text("METRICS_PORT=2222\n")
    (cwd / ".env").write_text("METRICS_PORT=1111\nHTTP_PORT=3333\n")
    path = config_dir / "g.yaml"
    path.write_text("metrics:\n  port: ${METRICS_PORT}\nhttp:\n  port: ${HTTP_PORT}\n")
    monkeypatch.chdir(cwd)
    assert env_files(config_dir) == [config_dir / ".env", cwd / ".env"]
    cfg = load_gatherer_config(path, env={})
    assert (cfg.metrics.port, cfg.http.port) == (2222, 3333)
    cfg = load_gatherer_config(path, env={"METRICS_PORT": "4444", "HTTP_PORT": "5555"})
    assert (cfg.metrics.port, cfg.http.port) == (4444, 5555)
    monkeypatch.chdir(config_dir)  # one file, read once
    assert env_files(config_dir) == [config_dir / ".env"]


def test_broken_config_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        load_gatherer_config(DATA / "broken.yaml", env={})
    assert info.value.problems == [
        "kalshi.rest_url: environment variable KALSHI_TEST_UNSET_VARIABLE is not set",
        "websocket.reconnect_backoff: expected a duration like 500ms, 5s or 5m, got 'soon'",
        "metrics.prot: unknown key",
    ]


def test_wrong_types(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(
        "metrics:\n  enabled: 'yes'\n  port: nine\nwebsocket:\n"
        "  ticker_connections: 1.5\nshard: 3/2\n"
    )
    with pytest.raises(ConfigError) as info:
        load_gatherer_config(path, env={})
    assert info.value.problems == [
        "websocket.ticker_connections: expected an integer, got 1.5",
        "metrics.enabled: expected true or false, got 'yes'",
        "metrics.port: expected an integer, got 'nine'",
    ]
    path.write_text("shard: 3/2\nwebsocket:\n  transport: carrier-pigeon\n")
    with pytest.raises(ConfigError) as info:
        load_gatherer_config(path, env={})
    assert info.value.problems == [
        "websocket.transport: expected websockets or trio-websocket",
        "shard: expected i/n with 0 <= i < n, got '3/2'",
    ]


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("a: [\n")
    with pytest.raises(ConfigError) as info:
        load_gatherer_config(path, env={})
    assert str(info.value) == (
        f"{path}: line 2, column 1: not valid YAML: expected the node content, but found"
        " '<stream end>' (while parsing a flow node at line 2, column 1)"
    )
    with pytest.raises(ConfigError, match="cannot read config"):
        load_gatherer_config(tmp_path / "nope.yaml", env={})


def test_durations_and_sizes() -> None:
    assert [parse_duration(x) for x in ("500ms", "1s", "5m", "1h", 2, "1.5s")] == [
        0.5,
        1.0,
        300.0,
        3600.0,
        2.0,
        1.5,
    ]
    assert [parse_size_bytes(x) for x in ("64MiB", "1GB", "512k", 10)] == [
        64 * 2**20,
        10**9,
        512 * 1024,
        10,
    ]
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration("soon")


def test_defaults_without_a_file() -> None:
    assert load_config(None, GathererConfig, env={}) == GathererConfig()
    assert load_config(None, DedupConfig, env={}).metrics.port == 9091


@given(st.text(max_size=200))
def test_hostile_yaml_raises_only_config_errors(text: str) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(text)
    try:
        load_gatherer_config(handle.name, env={})
    except ConfigError:
        pass
    finally:
        Path(handle.name).unlink()


def test_cli_prints_three_precise_lines_and_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kalshi", "gather", "--config", str(DATA / "broken.yaml")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"config error: {DATA / 'broken.yaml'}: kalshi.rest_url: environment variable "
        "KALSHI_TEST_UNSET_VARIABLE is not set",
        f"config error: {DATA / 'broken.yaml'}: websocket.reconnect_backoff: expected a "
        "duration like 500ms, 5s or 5m, got 'soon'",
        f"config error: {DATA / 'broken.yaml'}: metrics.prot: unknown key",
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_a_gatherer_id_cannot_escape_the_journal_directory() -> None:
    for bad in ("../../etc", "a/b", ".hidden", "", "x" * 65, "has space"):
        with pytest.raises(ConfigError) as caught:
            load_gatherer_config(None, overrides={"gatherer_id": bad})
        shown = "a value of 67 characters (not shown)" if len(bad) == 65 else repr(bad)
        assert caught.value.problems == [
            "gatherer_id: expected 1-64 of A-Z a-z 0-9 _ . - (not starting with a dot),"
            f" got {shown}"
        ]
    assert load_gatherer_config(None, overrides={"gatherer_id": "prod-us_east.1"}).gatherer_id


def test_mode_and_logging_format_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("mode: staging\nlogging:\n  format: xml\n")
    with pytest.raises(ConfigError) as info:
        load_gatherer_config(path, env={})
    assert info.value.problems == [
        "mode: expected local or production, got 'staging'",
        "logging.format: expected text or json, got 'xml'",
    ]
    path.write_text("mode: production\n")  # no embedded server in production
    with pytest.raises(ConfigError) as info:
        load_gatherer_config(path, env={})
    assert info.value.problems == [
        "timescaledb.url: required in production mode (local mode starts an embedded"
        " PostgreSQL when it is empty)"
    ]
    path.write_text("mode: production\ntimescaledb:\n  url: postgresql://db/kalshi\n")
    assert load_gatherer_config(path, env={}).mode == "production"


def test_websocket_queue_size_is_no_longer_a_key(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("websocket:\n  queue_size: 10\n")
    with pytest.raises(ConfigError) as info:
        load_gatherer_config(path, env={})
    assert info.value.problems == ["websocket.queue_size: unknown key"]


def test_writer_keys_are_the_table_names_and_the_seed_keys_still_load(tmp_path: Path) -> None:
    # The seed's guide names two writers `orderbook` and `snapshots`: a seed config loads
    # unchanged, each read as its table's writer.
    path = tmp_path / "g.yaml"
    path.write_text("writers:\n  orderbook: {batch_size: 7}\n  snapshots: {batch_size: 9}\n")
    cfg = load_gatherer_config(path, env={})
    assert cfg.writers.orderbook_deltas.batch_size == 7
    assert cfg.writers.orderbook_snapshots.batch_size == 9
    assert {f.name for f in attrs.fields(WritersConfig)} == set(TABLE_COLUMNS)


def test_a_writer_named_twice_or_by_an_old_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(
        "writers:\n  orderbook: {batch_size: 10}\n  lifecycle: {batch_size: 10}\n"
        "  orderbook_deltas: {batch_size: 7}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_gatherer_config(path, env={})
    assert info.value.problems == [
        "writers.orderbook: the same writer as writers.orderbook_deltas; keep one",
        "writers.lifecycle: unknown key (now writers.market_lifecycle)",
    ]


def test_json_logging_writes_one_object_per_record() -> None:
    script = (
        "import logging\n"
        "from kalshi.cli.app import configure_logging\n"
        "from kalshi.config import LoggingConfig\n"
        "configure_logging(LoggingConfig(level='info', format='json'))\n"
        "logging.getLogger('kalshi.test').info('listed %d markets', 7)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    record = json.loads(result.stderr)
    assert (record["levelname"], record["name"], record["message"]) == (
        "INFO",
        "kalshi.test",
        "listed 7 markets",
    )


PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"


def test_config_errors_never_echo_secrets_or_long_values(tmp_path: Path) -> None:
    # Issue 18 item 11: a type error in a key that holds a secret, or a long value anywhere,
    # names the key and the expected shape, never the value.
    path = tmp_path / "g.yaml"
    path.write_text(
        "kalshi:\n  api_secret: ${SECRET}\n  api_key: ${KEY}\n"
        "s3_export:\n  secret_key: ${S3}\n"
        "timescaledb:\n  url: [postgresql://writer:hunter2@db/kalshi]\n"
        "websocket:\n  reconnect_backoff: ${PASTED}\n"
    )
    env = {"SECRET": "{pem: 'x'}", "KEY": "[k]", "S3": "true", "PASTED": PEM}
    with pytest.raises(ConfigError) as info:
        load_gatherer_config(path, env=env)
    assert info.value.problems == [
        "kalshi.api_key: expected a string, got a value that is not shown (the key holds a secret)",
        "kalshi.api_secret: expected a string, got a value that is not shown"
        " (the key holds a secret)",
        "websocket.reconnect_backoff: expected a duration like 500ms, 5s or 5m,"
        " got a value of 88 characters (not shown)",
        "timescaledb.url: expected a string, got ['postgresql://writer:***@db/kalshi']",
        "s3_export.secret_key: expected a string, got a value that is not shown"
        " (the key holds a secret)",
    ]
    text = "\n".join(info.value.problems)
    for secret in ("hunter2", "MIIEv", "pem", "True"):
        assert secret not in text


def test_every_value_out_of_range_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(
        "kalshi:\n  rest_url: ftp://host/x\n  ws_url: http://host:99999/\n"
        "  rest_rate_limit: 0\n  request_timeout: 0s\n"
        "websocket:\n  ping_interval: 0\n  max_frame_bytes: 0\n  markets_per_command: 0\n"
        "timescaledb:\n  url: mysql://db/kalshi\n  max_connections: 0\n"
        "writers:\n  trades: {batch_size: 0, flush_interval: 0s}\n"
        "snapshot_poller:\n  max_markets: 0\n"
        "metrics:\n  port: -1\n  host: ''\n"
        "http:\n  port: ${HTTP_PORT}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_gatherer_config(path, env={"HTTP_PORT": "99999"})
    assert info.value.problems == [
        "kalshi.rest_url: expected an http:// or https:// URL, got 'ftp://host/x'",
        "kalshi.ws_url: expected a ws:// or wss:// URL, got 'http://host:99999/'",
        "kalshi.rest_rate_limit: expected a number > 0, got 0.0",
        "kalshi.request_timeout: expected a duration > 0, got 0.0",
        "websocket.ping_interval: expected a duration > 0, got 0.0",
        "websocket.markets_per_command: expected an integer >= 1, got 0",
        "websocket.max_frame_bytes: expected a size of at least 1 byte, got 0",
        "timescaledb.url: expected a postgresql://user@host:port/database URL (or a libpq"
        " key=value string), got 'mysql://db/kalshi'",
        "timescaledb.max_connections: expected an integer >= 1, got 0",
        "writers.trades.batch_size: expected an integer >= 1, got 0",
        "writers.trades.flush_interval: expected a duration > 0, got 0.0",
        "snapshot_poller.max_markets: expected an integer >= 1, got 0",
        "metrics.port: expected a port 0-65535 (0 disables), got -1",
        "metrics.host: expected a host name or address, got ''",
        "http.port: expected a port 0-65535 (0 disables), got 99999",
    ]


def test_dedup_values_are_checked_too(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(
        "gatherers:\n  - {id: a, timescaledb: 'postgresql://u:hunter2@db/a'}\n"
        "  - {id: a, timescaledb: 'mysql://u:hunter2@db/b'}\n"
        "production: {url: 'host=db dbname=prod'}\n"
        "s3_export: {endpoint: 's3.example', window: 0s}\n"
        "sync: {poll_interval: 0s, batch_size: 0}\n"
        "metrics: {port: 70000}\nhttp: {port: -2}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_dedup_config(path, env={})
    assert info.value.problems == [
        "gatherers[1].id: 'a' repeats gatherers[0].id",
        "gatherers[1].timescaledb: expected a postgresql://user@host:port/database URL (or a"
        " libpq key=value string), got 'mysql://u:***@db/b'",
        "s3_export.endpoint: expected an http(s):// URL, got 's3.example'",
        "s3_export.window: expected a duration > 0, got 0.0",
        "sync.poll_interval: expected a duration > 0, got 0.0",
        "sync.batch_size: expected an integer >= 1, got 0",
        "metrics.port: expected a port 0-65535 (0 disables), got 70000",
        "http.port: expected a port 0-65535 (0 disables), got -2",
    ]


def _kalshi(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kalshi", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        check=False,
    )


def test_cli_port_out_of_range_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("http:\n  port: ${HTTP_PORT:-8080}\nmetrics: {port: -1}\n")
    result = _kalshi("gather", "--config", str(path), cwd=tmp_path, env={"HTTP_PORT": "99999"})
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        f"config error: {path}: metrics.port: expected a port 0-65535 (0 disables), got -1",
        f"config error: {path}: http.port: expected a port 0-65535 (0 disables), got 99999",
    ]


def test_cli_missing_config_names_its_path_once(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.yaml"
    for command in ("gather", "dedup"):
        result = _kalshi(command, "--config", str(missing), cwd=tmp_path)
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr.splitlines() == [
            f"config error: {missing}: cannot read config: No such file or directory"
        ]


def test_cli_dedup_without_config_exits_2_with_each_missing_key(tmp_path: Path) -> None:
    result = _kalshi("dedup", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        "config error: production.url: the production database URL is required",
        "config error: gatherers: at least one gatherer database is required",
    ]
    result = _kalshi("export", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        "config error: production.url: the production database URL is required\n",
    )


def test_one_port_for_health_and_metrics_needs_one_host() -> None:
    clash = {"http.port": 9000, "metrics.port": 9000, "metrics.host": "0.0.0.0"}
    for kind in (GathererConfig, DedupConfig):
        with pytest.raises(ConfigError) as info:
            load_config(None, kind, env={}, overrides=clash)
        assert info.value.problems == [
            "metrics.host: must equal http.host (127.0.0.1) when both use port 9000"
        ]
        shared = load_config(None, kind, env={}, overrides={**clash, "metrics.host": "127.0.0.1"})
        assert (shared.http.port, shared.metrics.port) == (9000, 9000)


def test_cli_sim_port_out_of_range_exits_2(tmp_path: Path) -> None:
    for port in ("99999", "-1"):
        result = _kalshi("sim", "--port", port, "--markets", "5", cwd=tmp_path)
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == f"error: --port must be between 0 and 65535, got {port}\n"
    assert not (tmp_path / ".kalshi").exists()  # refused before writing a key


def test_every_port_on_the_command_line_is_checked(tmp_path: Path) -> None:
    # Outside tester F5: `replay --serve 70000` served on port 4464 (wrapped), 65536 ran,
    # -1 failed with a resolver's message and exit 1. Each port option and each URL option's
    # port: one line, exit 2, nothing started.
    journal = tmp_path / "j.jsonl"
    journal.write_text("")
    db_url = "postgresql://u@127.0.0.1:70000/x"
    db_line = (
        "config error: timescaledb.url: expected a postgresql://user@host:port/database URL"
        f" (or a libpq key=value string), got '{db_url}'\n"
    )
    cases = [
        (
            ("replay", str(journal), "--serve", "70000"),
            "error: --serve must be between 0 and 65535, got 70000\n",
        ),
        (
            ("replay", str(journal), "--serve", "65536"),
            "error: --serve must be between 0 and 65535, got 65536\n",
        ),
        (
            ("replay", str(journal), "--serve", "-1"),
            "error: --serve must be between 0 and 65535, got -1\n",
        ),
        (("sim", "--port", "65536"), "error: --port must be between 0 and 65535, got 65536\n"),
        (
            ("status", "http://127.0.0.1:70000", "--once"),
            "error: URL: port must be between 0 and 65535, got 'http://127.0.0.1:70000'\n",
        ),
        (
            ("status", "http://127.0.0.1:-1", "--once"),
            "error: URL: port must be between 0 and 65535, got 'http://127.0.0.1:-1'\n",
        ),
        (
            ("status", "--metrics-url", "http://h:99999", "--once"),
            "error: --metrics-url: port must be between 0 and 65535, got 'http://h:99999'\n",
        ),
        (("db", "status", "--url", db_url), db_line),
        (("replay", str(journal), "--db", db_url), db_line),
    ]
    for args, line in cases:
        result = _kalshi(*args, cwd=tmp_path)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", line), args
    assert not (tmp_path / ".kalshi").exists()


def test_a_silence_timeout_not_above_the_ping_interval_is_refused(tmp_path: Path) -> None:
    # Tester F8: silence 1s with pings every 10s reconnects a quiet healthy connection.
    path = tmp_path / "g.yaml"
    path.write_text("websocket:\n  silence_timeout: 1s\n  ping_interval: 10s\n")
    with pytest.raises(ConfigError) as info:
        load_gatherer_config(path)
    assert info.value.problems == [
        "websocket.silence_timeout: must be > ping_interval (a quiet healthy connection hears"
        " one pong per ping), got 1s <= 10s"
    ]
    path.write_text("websocket:\n  silence_timeout: 2s\n  ping_interval: 2s\n")
    with pytest.raises(ConfigError) as info:
        load_gatherer_config(path)
    assert info.value.problems == [
        "websocket.silence_timeout: must be > ping_interval (a quiet healthy connection hears"
        " one pong per ping), got 2s <= 2s"
    ]
