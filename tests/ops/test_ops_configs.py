"""The example configs load, with exactly the variables that .env.example documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kalshi.config import DedupConfig, GathererConfig, load_config
from kalshi.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-[^}]*)?\}")

GATHERER_CONFIGS = ["etc/gatherer.yaml", "etc/demo.yaml"]
DEDUP_CONFIGS = ["etc/dedup.yaml", "etc/compose/dedup.yaml"]
# Variables compose.yaml sets for the containers (not for a user's .env).
COMPOSE_SET = {"GATHERER_A_URL", "GATHERER_B_URL"}


def test_every_kalshi_config_under_etc_is_covered() -> None:
    found = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "etc").rglob("*.yaml")
        if "prometheus" not in path.parts and "grafana" not in path.parts
    )
    assert found == sorted(GATHERER_CONFIGS + DEDUP_CONFIGS)


@pytest.mark.parametrize("name", GATHERER_CONFIGS)
def test_gatherer_configs_load(name: str, documented_env: dict[str, str]) -> None:
    cfg = load_config(ROOT / name, GathererConfig, env=documented_env)
    assert cfg.metrics.port == 9090
    assert cfg.http.port == 8080
    assert cfg.timescaledb.url == ""  # .env.example: the embedded PostgreSQL


def test_gatherer_yaml_takes_its_values_from_the_environment(
    documented_env: dict[str, str],
) -> None:
    env = documented_env | {
        "KALSHI_API_KEY": "key-1",
        "GATHERER_SHARD": "2/3",
        "TIMESCALEDB_URL": "postgres://u@h:5432/g",
        "BATCH_SIZE": "250",
        "FLUSH_INTERVAL": "100ms",
        "JOURNAL_UPLOAD": "true",
        "METRICS_HOST": "0.0.0.0",
    }
    cfg = load_config(ROOT / "etc/gatherer.yaml", GathererConfig, env=env)
    assert cfg.kalshi.api_key == "key-1"
    assert cfg.kalshi.api_secret == ".kalshi/kalshi-key.pem"
    assert cfg.shard == "2/3"
    assert cfg.timescaledb.url == "postgres://u@h:5432/g"
    assert cfg.writers.trades.batch_size == 250
    assert cfg.writers.trades.flush_interval == 0.1
    assert cfg.journal.upload is True
    assert cfg.metrics.host == "0.0.0.0"
    assert cfg.s3_export.endpoint == "http://localhost:9000"


def test_demo_yaml_points_at_the_simulator_and_the_embedded_database() -> None:
    cfg = load_config(ROOT / "etc/demo.yaml", GathererConfig, env={})
    assert cfg.kalshi.rest_url == "http://127.0.0.1:8765/trade-api/v2"
    assert cfg.kalshi.ws_url == "ws://127.0.0.1:8765/trade-api/ws/v2"
    assert cfg.kalshi.api_secret == ".kalshi/sim/key.pem"
    assert cfg.timescaledb.url == ""


@pytest.mark.parametrize("name", DEDUP_CONFIGS)
def test_dedup_configs_load(name: str, documented_env: dict[str, str]) -> None:
    env = documented_env | {
        "TIMESCALEDB_URL": "postgres://u@h/a",
        "GATHERER_A_URL": "postgres://u@h/a",
        "GATHERER_B_URL": "postgres://u@h/b",
        "PRODUCTION_URL": "postgres://u@h/prod",
    }
    cfg = load_config(ROOT / name, DedupConfig, env=env)
    assert cfg.production.url == "postgres://u@h/prod"
    assert cfg.s3_export.enabled is True
    assert cfg.s3_export.prefix == "raw/"
    assert cfg.metrics.port == 9091
    assert cfg.gatherers[0].timescaledb == "postgres://u@h/a"


def test_gatherer_yaml_without_an_api_key_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "etc/gatherer.yaml", GathererConfig, env={"KALSHI_API_SECRET": "k"})
    assert info.value.problems == ["kalshi.api_key: environment variable KALSHI_API_KEY is not set"]


def test_env_example_documents_every_variable_the_configs_use() -> None:
    documented = set(_env_example_names())
    used: set[str] = set()
    for name in GATHERER_CONFIGS + DEDUP_CONFIGS:
        text = re.sub(r"(^|\s)#.*$", "", (ROOT / name).read_text(), flags=re.MULTILINE)
        used |= {m[1] for m in _VAR.finditer(text)}
    assert sorted(used - documented - COMPOSE_SET) == []


def _env_example_names() -> list[str]:
    names = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.append(match[1])
    return names
