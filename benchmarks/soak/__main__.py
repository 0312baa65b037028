"""`python -m benchmarks.soak` (`just soak`): the fault-injection soak (see
docs/reliability.md). Dev-only: it needs `weed` (SeaweedFS) and starts PostgreSQL, so it is
not part of the installed package."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import trio
from cyclopts import App, Parameter
from rich.console import Console
from rich.table import Table

app = App(name="soak", help_flags=("--help", "-h"))
console = Console()


@app.default
def soak(
    *,
    duration: Annotated[
        float, Parameter(help="Seconds of faults (the run takes ~40 s more).")
    ] = 60.0,
    markets: Annotated[int, Parameter(help="Markets listed by the simulator.")] = 40,
    active: Annotated[int, Parameter(help="Markets that trade.")] = 12,
    rate: Annotated[float, Parameter(help="Simulated messages per second.")] = 300.0,
    transport: Annotated[str, Parameter(help="Gatherers' WebSocket transport.")] = "websockets",
    workdir: Annotated[Path | None, Parameter(help="Keep configs, logs and journals here.")] = None,
) -> None:
    """Run the simulator, two gatherers, the deduplicator, PostgreSQL and an S3 server under
    a fault schedule, and check every trade and book against the simulator's ground truth.

    Exits 1 on any loss, duplicate, wrong book or failed recovery.
    """
    from benchmarks.soak import run_soak

    target = workdir or Path(tempfile.mkdtemp(prefix="kalshi-soak-"))
    report = trio.run(
        lambda: run_soak(
            target,
            duration,
            markets=markets,
            active=active,
            rate=rate,
            transport=transport,
            say=lambda line: console.print(line, markup=False, highlight=False),
        )
    )
    table = Table(title=f"soak: {duration:.0f} s of faults", show_lines=False)
    table.add_column("measure")
    table.add_column("value", overflow="fold")
    for what, value in report.rows:
        table.add_row(what, value)
    console.print(table)
    faults = Table(title="faults and recovery (all connections live again)")
    faults.add_column("at (s)", justify="right")
    faults.add_column("fault")
    faults.add_column("recovery (s)", justify="right")
    for name, at, recovery in report.faults:
        faults.add_row(f"{at:.1f}", name, "-" if recovery is None else f"{recovery:.2f}")
    console.print(faults)
    console.print(f"workdir: {target}", markup=False, highlight=False)
    if report.failures:
        for failure in report.failures:
            console.print(f"[bold red]FAIL[/] {failure}")
        raise SystemExit(1)
    console.print("[bold green]PASS[/] no loss, no duplicate, every book equal to the exchange's")


if __name__ == "__main__":
    app()
