"""`kalshi sim`: run the simulated exchange until Ctrl-C."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import trio
from cyclopts import Parameter

from kalshi.cli.app import (
    MARKETS,
    NON_NEGATIVE,
    POSITIVE,
    UsageError,
    check_port,
    console,
    fail,
    parse_time,
    ports_first,
    stop_on_signals,
)
from kalshi.errors import ConfigError

if TYPE_CHECKING:
    from kalshi.sim import FaultPlan

DEFAULT_PORT = 8765
SIM_HOST = "127.0.0.1"  # open_sim_exchange's host
DEFAULT_KEY_PATH = Path(".kalshi/sim/key.pem")
# The key id etc/demo.yaml signs with by default (KALSHI_SIM_KEY_ID): `kalshi sim` then
# `kalshi gather --config etc/demo.yaml` work together with no variable set.
DEFAULT_KEY_ID = "sim"


def sim(
    *,
    markets: Annotated[
        int, Parameter(help="Markets listed (up to 250 000).", validator=MARKETS)
    ] = 1000,
    active: Annotated[
        int | None,
        Parameter(
            help="Markets that trade (default: 50, at most --markets).", validator=NON_NEGATIVE
        ),
    ] = None,
    rate: Annotated[
        float,
        Parameter(help="Messages per second, all markets together.", validator=NON_NEGATIVE),
    ] = 500.0,
    seed: Annotated[int, Parameter(help="Seed of the deterministic engine.")] = 1,
    port: Annotated[
        int, Parameter(help="Port of REST and WebSocket (0: any free port).")
    ] = DEFAULT_PORT,
    faults: Annotated[str, Parameter(help="Fault schedule, see docs/simulator.md.")] = "",
    blast: Annotated[
        bool, Parameter(help="Stream pre-generated frames as fast as possible.")
    ] = False,
    blast_events: Annotated[
        int, Parameter(help="Messages pre-generated in blast mode.", validator=NON_NEGATIVE)
    ] = 100_000,
    lifecycle_every: Annotated[
        float, Parameter(help="Seconds between settle+list (0: off).", validator=NON_NEGATIVE)
    ] = 60.0,
    tier: Annotated[
        str, Parameter(help="REST read budget tier (basic ... prestige, or none).")
    ] = "basic",
    key_file: Annotated[
        Path, Parameter(help="Where to write the private key PEM.")
    ] = DEFAULT_KEY_PATH,
    key_id: Annotated[
        str, Parameter(help="The API key id it accepts (etc/demo.yaml's default).")
    ] = DEFAULT_KEY_ID,
    truth: Annotated[
        Path | None,
        Parameter(
            help="Stream the ground truth (JSON lines) to this file as it happens; the "
            "summary line is added on exit. No generated message is then kept in memory."
        ),
    ] = None,
    trade_window: Annotated[
        float,
        Parameter(
            help="Seconds of trades kept for GET /markets/trades (0: all).", validator=NON_NEGATIVE
        ),
    ] = 0.0,
    busy: Annotated[
        int,
        Parameter(
            help="Busy markets: they take 80% of the activity (0: all alike).",
            validator=NON_NEGATIVE,
        ),
    ] = 0,
    burst_every: Annotated[
        float,
        Parameter(help="Seconds between two bursts of traffic (0: none).", validator=NON_NEGATIVE),
    ] = 0.0,
    burst_x: Annotated[
        float, Parameter(help="Rate multiplier during a burst.", validator=NON_NEGATIVE)
    ] = 20.0,
    burst_seconds: Annotated[
        float, Parameter(help="Length of a burst in seconds.", validator=NON_NEGATIVE)
    ] = 10.0,
    market_cap: Annotated[
        int,
        Parameter(
            help="Markets per subscription; beyond is error 26 (0: no cap).",
            validator=NON_NEGATIVE,
        ),
    ] = 0,
    command_rate: Annotated[
        float,
        Parameter(help="WebSocket commands/s per session; beyond is error 27.", validator=POSITIVE),
    ] = 10_000.0,
    rest_latency: Annotated[
        float,
        Parameter(
            help="Seconds each REST request waits before it is answered (0: none).",
            validator=NON_NEGATIVE,
        ),
    ] = 0.0,
    run_id: Annotated[
        int | None,
        Parameter(
            help="Salts the ids issued once for good (trade ids, markets added at run time). "
            "Default: the start time in µs, so a restart never reissues an id; give a "
            "previous run's to reproduce it."
        ),
    ] = None,
    start: Annotated[
        str,
        Parameter(
            help="The universe's date (2026-11-25), time (RFC 3339) or µs: it dates every ticker "
            "and status. Default: now."
        ),
    ] = "",
) -> None:
    """Run a local Kalshi exchange (REST + WebSocket) for demos and tests."""
    from kalshi.sim import FaultPlan
    from kalshi.sim.rest import TIERS

    plan: FaultPlan | None

    if active is None:
        active = min(50, markets)
    elif active > markets:
        raise UsageError(f"--active ({active}) must be at most --markets ({markets})")
    check_port("--port", port)
    if tier != "none" and tier not in TIERS:
        raise UsageError(f"--tier must be one of {', '.join(TIERS)} or none")
    try:
        plan = FaultPlan.parse(faults) if faults else None
    except ConfigError as exc:
        raise UsageError("; ".join(exc.problems)) from None
    start_us = parse_time(start, "--start") if start else None
    # a taken port fails here, before the key or the truth file is written
    ports_first((SIM_HOST, port, "simulator"))
    key_pem = _key_pem(key_file)
    options: dict[str, Any] = {
        "start_us": start_us,
        "run_id": run_id,
        "private_key_pem": key_pem,
        "key_id": key_id,
        "active": active,
        "tier": None if tier == "none" else tier,
        "lifecycle_every": lifecycle_every or None,
        "blast_events": blast_events,
        "keep_events": truth is None,
        "trade_window_s": trade_window or None,
        "busy": busy or None,
        "burst_every": burst_every or None,
        "burst_x": burst_x,
        "burst_seconds": burst_seconds,
        "market_cap": market_cap or None,
        "command_rate": command_rate,
        "rest_latency": rest_latency,
    }
    try:
        trio.run(_run, markets, rate, seed, plan, port, blast, options, key_file, truth)
    except OSError as exc:  # names the simulator, its host and port (kalshi.http.listen)
        fail(exc.strerror or str(exc))


def _key_pem(key_file: Path) -> bytes:
    """The key in ``key_file`` (kept across runs so a gatherer config stays valid), or a
    new one written there (mode 0600)."""
    from kalshi.auth import generate_rsa_key_pem

    if key_file.exists():
        return key_file.read_bytes()
    pem = generate_rsa_key_pem()[0]
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.touch(0o600)
    key_file.write_bytes(pem)
    return pem


async def _run(
    markets: int,
    rate: float,
    seed: int,
    plan: FaultPlan | None,
    port: int,
    blast: bool,
    options: dict[str, Any],
    key_file: Path,
    truth: Path | None,
) -> None:
    """Serve until SIGINT/SIGTERM, streaming the truth file; a signal is a clean exit."""
    from kalshi.sim import open_sim_exchange

    stop = trio.Event()  # the first SIGINT/SIGTERM, even one during the start
    async with stop_on_signals(soft=stop) as nursery:
        with contextlib.ExitStack() as closing:
            if truth is not None:
                truth.parent.mkdir(parents=True, exist_ok=True)
                options["truth_stream"] = closing.enter_context(truth.open("wb"))
            async with open_sim_exchange(
                markets, rate, seed, plan, port, blast, **options
            ) as exchange:
                exchange.private_key_path = key_file
                console.print(f"REST       {exchange.rest_url}")
                console.print(f"WebSocket  {exchange.ws_url}")
                console.print(f"key id     {exchange.key_id}")
                console.print(f"key file   {key_file}")
                console.print(
                    f"run id     {exchange.engine.run_id} (--run-id to reproduce this run)"
                )
                console.print(
                    "gatherer config:\n"
                    f"  kalshi:\n    rest_url: {exchange.rest_url}\n    ws_url: {exchange.ws_url}\n"
                    f"    api_key: {exchange.key_id}\n    api_secret: {key_file}",
                    highlight=False,
                )
                await stop.wait()
                exchange.engine.pause()
                if truth is not None:
                    exchange.truth.close_stream()
                    console.print(f"truth      {truth} ({exchange.truth.generated + 1} lines)")
        nursery.cancel_scope.cancel()  # stops listening
