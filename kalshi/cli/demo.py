"""`kalshi demo`: the simulator, the embedded database and the gatherer with its live screen,
in one process, from one command (`just demo`)."""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import trio
from cyclopts import Parameter

from kalshi.auth import Signer, load_private_key
from kalshi.cli.app import (
    MARKETS,
    NON_NEGATIVE,
    POSITIVE,
    UsageError,
    configure_logging,
    console,
    fail,
    load_or_exit,
    ports_first,
)
from kalshi.cli.gather import record
from kalshi.cli.sim import SIM_HOST
from kalshi.config import GathererConfig
from kalshi.errors import KalshiError
from kalshi.gather.service import Gatherer
from kalshi.http import endpoint_ports
from kalshi.store import migrate, resolve_database

log = logging.getLogger("kalshi.demo")

# Shipped inside the package (the repository's etc/demo.yaml links to it), so an installed
# wheel runs the demo from any directory; its relative paths are under the working directory.
DEMO_CONFIG = Path(str(files("kalshi") / "etc" / "demo.yaml"))


def demo(
    *,
    config: Annotated[
        Path | None,
        Parameter(help="Gatherer config (YAML). Default: the packaged etc/demo.yaml."),
    ] = None,
    markets: Annotated[
        int, Parameter(help="Markets in the simulated exchange.", validator=MARKETS)
    ] = 2000,
    active: Annotated[
        int | None,
        Parameter(
            help="Markets that trade (default: 200, at most --markets).", validator=NON_NEGATIVE
        ),
    ] = None,
    rate: Annotated[
        float, Parameter(help="Simulated messages per second.", validator=NON_NEGATIVE)
    ] = 2000.0,
    duration: Annotated[
        float | None, Parameter(help="Stop after this many seconds.", validator=POSITIVE)
    ] = None,
    tui: Annotated[bool, Parameter(help="Live screen (default on a terminal).")] = True,
) -> None:
    """Record a simulated exchange into the embedded database, with the live screen.

    The simulator listens on the port of ``kalshi.rest_url`` in the config; the gatherer
    uses the simulator's key pair. Ctrl-C stops both and flushes everything.
    """
    if active is None:
        active = min(200, markets)
    elif active > markets:
        raise UsageError(f"--active ({active}) must be at most --markets ({markets})")
    cfg = load_or_exit(config or DEMO_CONFIG, GathererConfig)
    configure_logging(cfg.logging, quiet=tui)
    # a taken port fails here, before the database is started, migrated or written
    ports_first((SIM_HOST, _sim_port(cfg), "simulator"), *endpoint_ports(cfg.http, cfg.metrics))
    try:
        with resolve_database(cfg.timescaledb) as url:
            migrate(url)
            console.print(f"database: {url}", markup=False, highlight=False)
            trio.run(_demo, cfg, url, markets, active, rate, duration, tui)
    except KalshiError as exc:
        fail(str(exc))


def _sim_port(cfg: GathererConfig) -> int:
    """The simulator's port: ``kalshi.rest_url``'s (0: any free one)."""
    return urlsplit(cfg.kalshi.rest_url).port or 0


async def _demo(
    cfg: GathererConfig,
    url: str,
    markets: int,
    active: int,
    rate: float,
    duration: float | None,
    tui: bool,
) -> None:
    from kalshi.sim import open_sim_exchange  # the simulator is only needed here

    port = _sim_port(cfg)
    async with open_sim_exchange(markets=markets, active=active, rate=rate, port=port) as sim:
        signer = Signer(sim.key_id, load_private_key(sim.private_key_pem.decode()))
        console.print(f"simulator: {sim.rest_url}  {sim.ws_url}", markup=False, highlight=False)
        gatherer = Gatherer(cfg, url, signer=signer)
        await record(gatherer, duration, tui)
        health = gatherer.health()
        written = {name: t["rows_written"] for name, t in health["tables"].items()}
        console.print(f"stopped; rows written: {written}", markup=False, highlight=False)
