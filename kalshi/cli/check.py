"""`kalshi config check FILE...`: check configs without running anything."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from cyclopts import App, Parameter

from kalshi.auth import load_private_key
from kalshi.cli.app import console
from kalshi.cli.dedup import dedup_problems
from kalshi.config import DedupConfig, GathererConfig, config_kind, load_config
from kalshi.errors import AuthError, ConfigError

config_app = App(name="config", help="Check configs: check.")

_KINDS: dict[str, type[GathererConfig] | type[DedupConfig]] = {
    "gatherer": GathererConfig,
    "dedup": DedupConfig,
}
_LABELS = {GathererConfig: "gatherer", DedupConfig: "deduplicator"}


@config_app.command
def check(
    files: Annotated[list[Path], Parameter(help="Config files (YAML).")],
    /,
    *,
    kind: Annotated[
        Literal["auto", "gatherer", "dedup"],
        Parameter(help="Which config (auto: by its keys; only shared keys: a gatherer's)."),
    ] = "auto",
) -> None:
    """Check each config as the command that reads it would, starting nothing.

    A gatherer config (`kalshi gather`, `db`, `replay`, `demo`) or a deduplicator config
    (`kalshi dedup`, `export`), told apart by its keys: every key, type and range (with
    ``${VAR}`` from the environment and ``.env``), and what the command needs besides: a
    gatherer's private key loads; a deduplicator names production and its gatherers.
    Prints ``FILE: ok (a gatherer config)`` per good file, ``config error: FILE: PROBLEM``
    per problem; exits 2 when any file has a problem (docs/operations.md, "Configure").
    """
    bad = False
    for path in files:
        problems, label = _problems(path, kind)
        for problem in problems:
            where = "" if problem.startswith(f"{path}:") else f"{path}: "
            print(f"config error: {where}{problem}", file=sys.stderr)
        if problems:
            bad = True
        else:
            console.print(f"{path}: ok (a {label} config)", markup=False, highlight=False)
    if bad:
        raise SystemExit(2)


def _problems(path: Path, kind: str) -> tuple[list[str], str]:
    """Every problem of the config at ``path`` and the kind it was checked as."""
    try:
        chosen = _KINDS[kind] if kind != "auto" else config_kind(path) or GathererConfig
    except ConfigError as exc:
        return exc.problems, ""
    label = _LABELS[chosen]
    try:
        cfg = load_config(path, chosen)
    except ConfigError as exc:
        return exc.problems, label
    if isinstance(cfg, DedupConfig):
        return dedup_problems(cfg), label
    try:
        load_private_key(cfg.kalshi.api_secret)
    except AuthError as exc:
        return [f"kalshi.api_secret: {exc}"], label
    return [], label
