"""compose.yaml against the Compose specification's JSON schema, and what it promises."""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _schema() -> dict[str, Any]:
    # The compose-spec schema as vendored (with its licence) by check-jsonschema.
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def _errors(document: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(_schema())
    return sorted(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    )


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def test_compose_yaml_is_valid_against_the_compose_spec_schema() -> None:
    assert _schema()["title"] == "Compose Specification"
    assert _errors(_compose()) == []


def test_the_schema_check_rejects_a_broken_service() -> None:
    broken = _compose()
    broken["services"]["timescaledb"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["minio"]["ports"] = {"9000": 9000}
    errors = _errors(broken)
    assert errors == [
        "services/minio/ports: {'9000': 9000} is not of type 'array'",
        "services/timescaledb/healthcheck: 'intervall' does not match any of the regexes: '^x-'",
    ]


def test_services_and_profiles() -> None:
    services = _compose()["services"]
    profiles = {name: tuple(s.get("profiles", ())) for name, s in services.items()}
    assert profiles == {
        "timescaledb": (),
        "minio": (),
        "minio-bucket": (),
        "prometheus": ("monitoring",),
        "grafana": ("monitoring",),
        "migrate": ("app",),
        "gatherer-a": ("app",),
        "gatherer-b": ("app",),
        "dedup": ("app",),
    }
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert services["timescaledb"]["environment"]["POSTGRES_DB"] == "kalshi_ts"
    for name in ("timescaledb", "minio"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    for name in ("gatherer-a", "gatherer-b", "dedup", "migrate"):
        assert services[name]["build"] == "."
    assert services["gatherer-a"]["command"] == ["gather", "--config", "etc/gatherer.yaml"]
    assert services["dedup"]["command"] == ["dedup", "--config", "etc/compose/dedup.yaml"]


def test_every_bind_mount_names_a_file_of_the_repository() -> None:
    mounts = [
        volume.split(":")[0]
        for service in _compose()["services"].values()
        for volume in service.get("volumes", ())
        if volume.startswith("./")
    ]
    assert mounts == [
        "./etc/compose/init.sql",
        "./etc/prometheus",
        "./etc/grafana/provisioning",
        "./etc/grafana/dashboards",
    ]
    for mount in mounts:
        assert (ROOT / mount).exists(), mount


def test_dockerfile_is_slim_non_root_with_a_health_check() -> None:
    lines = _instructions((ROOT / "Dockerfile").read_text())
    assert re.fullmatch(r"FROM python:3\.1[1-9]-slim", lines[0])
    users = [line for line in lines if line.startswith("USER ")]
    assert users == ["USER kalshi"]
    assert lines.index("USER kalshi") < lines.index(
        next(line for line in lines if line.startswith("HEALTHCHECK"))
    )
    assert "ENV HEALTH_URL=http://127.0.0.1:8080/health" in lines
    assert lines[-2:] == [
        'ENTRYPOINT ["kalshi"]',
        'CMD ["gather", "--config", "etc/gatherer.yaml"]',
    ]
    copied = [line.split()[1] for line in lines if line.startswith("COPY ")]
    assert copied == ["pyproject.toml", "kalshi", "etc"]
    # .dockerignore lets exactly these in.
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    assert allowed == ["pyproject.toml", "README.md", "kalshi", "etc"]


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions with continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [
        " ".join(line.split())
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
