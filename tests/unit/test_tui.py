"""The live screen from literal health documents: exact rates, exact text."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import trio
import trio.testing
from rich.console import Console

from kalshi.errors import NetError
from kalshi.tui import TuiState, parse_metrics, render, run_tui, summary_line
from kalshi.tui.state import MetricTotal


def health(step: int) -> dict[str, Any]:
    """The gatherer's document after ``step`` intervals: exact, known growth per step."""
    return {
        "status": "ok",
        "gatherer_id": "g-1",
        "uptime_s": 3723.5 + 2 * step,
        "connections": [
            {
                "name": "ticker-0",
                "channel": "ticker",
                "state": "live",
                "markets": 120,
                "last_message_age_s": 0.5,
                "reconnects": 0,
                "messages": 1000 * step,
            },
            {
                "name": "orderbook-1",
                "channel": "orderbook_delta",
                "state": "backoff",
                "markets": 60,
                "last_message_age_s": None,
                "reconnects": 3,
                "messages": 7000,
            },
        ],
        "channels": {
            "ticker": {"messages": 1000 * step},
            "orderbook_delta": {"messages": [0, 100, 400, 1000][step]},
        },
        "tables": {
            "trades": {"queue": 4, "rows_written": 50 * step, "spool_rows": 0, "dead_letters": 0},
            "orderbook_deltas": {
                "queue": 250,
                "rows_written": [0, 100, 400, 1000][step],
                "spool_rows": 1200,
                "dead_letters": 2,
            },
        },
        "db": {"state": "up"},
        "markets": {"tracked": 1500, "active": 900, "books": 60},
        "gaps": 2,
        "resnapshots": 1,
        "decode_errors": 0,
        "journal": {"records": 123456, "bytes": 5_600_000, "pressure": False},
        "top_markets": [
            {"ticker": "KXBTC-25DEC-T100", "messages": 812, "best_bid": 42000, "best_ask": 43500},
            {"ticker": "KXETH-25DEC", "messages": 40, "best_bid": None, "best_ask": 100000},
            {"ticker": "KXTINY", "messages": 3, "best_bid": 1, "best_ask": 99999},
        ],
    }


def text_of(state: TuiState, width: int = 120) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(render(state))
    return console.export_text()


def lines_of(state: TuiState) -> list[str]:
    return [line.rstrip() for line in text_of(state).splitlines()]


def observed(*steps: int, every: float = 2.0) -> TuiState:
    state = TuiState()
    for i, step in enumerate(steps):
        state.observe(health(step), now=100.0 + every * i)
    return state


def test_rates_and_history_from_exact_counts_over_exact_intervals() -> None:
    lines = lines_of(observed(0, 1, 2, 3))
    # ticker: +1000 per 2 s; orderbook_delta: +100, +300, +600 per 2 s.
    assert lines[:3] == [
        "kalshi gatherer g-1   status ok   uptime 1h02m09s   db up",
        "journal 123,456 records · 5.6 MB · pressure no",
        "markets 1,500 tracked · 900 active · 60 books   gaps 2   resnapshots 1   "
        "decode errors 0   reconnects 3",
    ]
    assert lines[4:9] == [
        "connections",
        "connection    channel           state     markets    msgs   msgs/s   "
        "last msg   reconnects",
        "─" * 90,
        "ticker-0      ticker            live          120   3,000    500.0       "
        "0.5s            0",
        "orderbook-1   orderbook_delta   backoff        60   7,000      0.0          "
        "-            3",
    ]
    # Side by side: channels, then (from column 46) tables; history is the rate series.
    assert lines[10:15] == [
        "channels                                      tables",
        "channel            msgs   msgs/s   history    "
        "table              queue   spool   written   dead   rows/s   history",
        "─" * 42 + " " * 4 + "─" * 68,
        "ticker            3,000    500.0   ███        "
        "trades                 4       0       150      0     25.0   ███",
        "orderbook_delta   1,000    300.0   ▂▅█        "
        "orderbook_deltas     250   1,200     1,000      2    300.0   ▂▅█",
    ]


def test_top_markets_prices_in_dollars() -> None:
    lines = lines_of(observed(0))
    start = lines.index("top markets")
    assert lines[start : start + 6] == [
        "top markets",
        "ticker             msgs        bid        ask",
        "─" * 45,
        "KXBTC-25DEC-T100    812    $0.4200    $0.4350",
        "KXETH-25DEC          40          -    $1.0000",
        "KXTINY                3   $0.00001   $0.99999",
    ]


def test_first_document_has_no_rates_yet() -> None:
    state = observed(1)
    text = text_of(state)
    assert "ticker            1,000        -" in text
    assert summary_line(state) == (
        "status=ok uptime=1h02m05s conns=1/2 msgs/s=- rows/s=- queue=254 spool=1,200 "
        "gaps=2 resnapshots=1 reconnects=3 markets=1,500 db=up"
    )


def test_summary_line_totals_rates() -> None:
    state = observed(2, 3, every=0.5)
    # ticker +1000, orderbook_delta +600 in 0.5 s; trades +50, deltas +600 rows.
    assert summary_line(state) == (
        "status=ok uptime=1h02m09s conns=1/2 msgs/s=3,200.0 rows/s=1,300.0 queue=254 "
        "spool=1,200 gaps=2 resnapshots=1 reconnects=3 markets=1,500 db=up"
    )


def test_counter_going_down_means_restart_and_gives_no_rate() -> None:
    state = observed(3, 1)
    assert "ticker            1,000        -" in text_of(state)
    assert "msgs/s=- rows/s=-" in summary_line(state)
    state.observe(health(2), now=108.0)  # 6 s after the restart sample: +1000 -> 166.7/s
    assert "ticker            2,000    166.7   █" in text_of(state)


def test_degraded_status_and_db_down() -> None:
    document = health(1) | {"status": "degraded", "db": {"state": "down"}}
    state = TuiState()
    state.observe(document, now=0.0)
    assert lines_of(state)[:2] == [
        "kalshi gatherer g-1   status degraded   uptime 1h02m05s   db down",
        "journal 123,456 records · 5.6 MB · pressure no",
    ]
    assert summary_line(state).startswith("status=degraded ")
    assert summary_line(state).endswith(" db=down")


def test_missing_and_malformed_keys_render_what_is_there() -> None:
    state = TuiState()
    state.observe({}, now=0.0)
    assert lines_of(state) == ["kalshi service"]
    assert summary_line(state) == "no data"
    state.observe(
        {
            "status": "ok",
            "connections": "not a list",
            "channels": {"trade": {"messages": "many"}, "ticker": 5},
            "tables": [],
            "top_markets": [{"ticker": "KX", "best_bid": "0.42"}],
            "uptime_s": None,
        },
        now=1.0,
    )
    assert lines_of(state) == [
        "kalshi service   status ok   uptime -",
        "",
        "channels",
        "channel   msgs   msgs/s   history",
        "─" * 33,
        "trade     many        -",
        "ticker       -        -",
        "",
        "top markets",
        "ticker   msgs   bid   ask",
        "─" * 25,
        "KX          -     -     -",
    ]


def test_other_services_documents_render_generically() -> None:
    state = TuiState()
    for now, merged in ((0.0, 100), (4.0, 300)):
        state.observe(
            {
                "status": "ok",
                "service": "dedup",
                "exported_files": 12,
                "s3": {"bucket": "kalshi", "objects": 40, "reachable": True},
                "lag": {"g-1": {"seconds": 3.25, "rows": 10}, "g-2": {"seconds": 0, "rows": 0}},
                "tables": {"trades": {"rows_written": merged, "duplicates": 7}},
                "sources": [{"url": "postgresql://g1", "up": True}],
            },
            now=now,
        )
    lines = lines_of(state)
    assert lines == [
        "kalshi dedup   status ok",
        "",
        "tables",
        "table    written   duplicates   rows/s   history",
        "─" * 48,
        "trades       300            7     50.0   █",
        "",
        "exported files 12",
        "",
        "s3 bucket kalshi · 40 objects · reachable yes",
        "",
        "lag",
        "name   seconds   rows",
        "─" * 21,
        "g-1       3.25     10",
        "g-2          0      0",
        "",
        "sources",
        "url               up",
        "─" * 21,
        "postgresql://g1   yes",
    ]
    assert summary_line(state) == "status=ok rows/s=50.0"


def test_error_is_shown_above_the_last_document() -> None:
    state = observed(0)
    state.observe_error("cannot reach http://127.0.0.1:1/health: refused")
    lines = lines_of(state)
    assert lines[0] == "error: cannot reach http://127.0.0.1:1/health: refused"
    assert lines[1].startswith("kalshi gatherer g-1")
    assert summary_line(state) == "error: cannot reach http://127.0.0.1:1/health: refused"
    state.observe(health(1), now=102.0)
    assert state.error is None


def test_waiting_screen_before_any_document() -> None:
    assert lines_of(TuiState()) == ["waiting for the first health document"]


METRICS = """\
# HELP kalshi_messages_total Frames received
# TYPE kalshi_messages_total counter
kalshi_messages_total{channel="trade",type="trade"} 30.0
kalshi_messages_total{channel="ticker",type="ticker"} 70.0
# HELP kalshi_messages_created Frames received
# TYPE kalshi_messages_created gauge
kalshi_messages_created{channel="trade",type="trade"} 1.7e+09
# HELP kalshi_store_queue_rows Rows waiting
# TYPE kalshi_store_queue_rows gauge
kalshi_store_queue_rows{table="trades"} 4.0
kalshi_store_queue_rows{table="tickers"} 1.5
# HELP process_cpu_seconds_total CPU
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.0
# HELP kalshi_latency_seconds Latency
# TYPE kalshi_latency_seconds histogram
kalshi_latency_seconds_bucket{le="+Inf"} 3.0
kalshi_latency_seconds_count 3.0
kalshi_latency_seconds_sum 0.5
"""


def test_parse_metrics_sums_counters_and_gauges() -> None:
    assert parse_metrics(METRICS) == {
        "kalshi_messages": MetricTotal("counter", 100.0),
        "kalshi_store_queue_rows": MetricTotal("gauge", 5.5),
    }


def test_metrics_panel_with_counter_rates() -> None:
    state = TuiState()
    state.observe(health(0), now=0.0, metrics=METRICS)
    state.observe(health(1), now=4.0, metrics=METRICS.replace("} 70.0", "} 110.0"))
    lines = lines_of(state)
    start = next(i for i, line in enumerate(lines) if line.startswith("top markets"))
    assert [line[49:] for line in lines[start : start + 5]] == [
        "metrics",
        "metric                    value     /s",
        "─" * 38,
        "kalshi_messages             140   10.0",
        "kalshi_store_queue_rows    5.50      -",
    ]


async def test_run_tui_prints_one_line_per_refresh_off_a_terminal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    documents = iter([health(0), health(1), health(2)])
    calls = 0

    async def source() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise NetError("cannot reach http://127.0.0.1:8080/health: refused")
        return next(documents)

    out = io.StringIO()
    console = Console(file=out, width=120)
    with trio.move_on_after(3.5):  # samples at t = 0, 1, 2, 3
        await run_tui(source, refresh=1.0, console=console)
    assert out.getvalue().splitlines() == [
        "status=ok uptime=1h02m03s conns=1/2 msgs/s=- rows/s=- queue=254 spool=1,200 "
        "gaps=2 resnapshots=1 reconnects=3 markets=1,500 db=up",
        "status=ok uptime=1h02m05s conns=1/2 msgs/s=1,100.0 rows/s=150.0 queue=254 "
        "spool=1,200 gaps=2 resnapshots=1 reconnects=3 markets=1,500 db=up",
        "error: cannot reach http://127.0.0.1:8080/health: refused",
        # 2 s after the last good document: ticker +1000, orderbook_delta +300 -> 650/s.
        "status=ok uptime=1h02m07s conns=1/2 msgs/s=650.0 rows/s=175.0 queue=254 "
        "spool=1,200 gaps=2 resnapshots=1 reconnects=3 markets=1,500 db=up",
    ]


async def test_run_tui_live_screen_on_a_terminal(autojump_clock: trio.testing.MockClock) -> None:
    steps = iter(range(4))
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, color_system=None)
    with trio.move_on_after(1.5):  # samples at t = 0 and 1
        await run_tui(lambda: health(next(steps)), refresh=1.0, console=console)
    screen = out.getvalue()
    assert "ticker-0      ticker            live          120       0        -" in screen
    assert "ticker-0      ticker            live          120   1,000   1,000.0" in screen
    assert "orderbook_delta     100     100.0   █" in screen
    assert "waiting for the first health document" in screen


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


async def test_a_drawing_failure_costs_a_frame_not_the_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    documents: Iterator[dict[str, object]] = iter([{"status": Unprintable()}, {"status": "ok"}])
    out = io.StringIO()
    with trio.move_on_after(1.5):  # samples at t = 0 and 1
        await run_tui(lambda: next(documents), console=Console(file=out, width=120))
    assert out.getvalue().splitlines() == [
        "error: drawing the screen failed: RuntimeError('no text')",
        "status=ok",
    ]


def test_formats() -> None:
    from kalshi.tui import _format as fmt

    assert [fmt.duration(s) for s in (0.25, 59.96, 61, 3600, 90061, None)] == [
        "0.2s",
        "59.9s",
        "1m01s",
        "1h00m00s",
        "1d01h01m",
        "-",
    ]
    assert [fmt.size(b) for b in (999, 1000, 1_234_567, 5 * 10**9, 7 * 10**15, 1.5)] == [
        "999 B",
        "1.0 kB",
        "1.2 MB",
        "5.0 GB",
        "7000.0 TB",
        "-",
    ]
    assert [fmt.count(v) for v in (12345678901234567890, 2.0, 2.125, True)] == [
        "12,345,678,901,234,567,890",
        "2",
        "2.12",
        "-",
    ]
    assert [fmt.price(p) for p in (0, 42000, 100000, 12345, True, "0.42")] == [
        "$0.0000",
        "$0.4200",
        "$1.0000",
        "$0.12345",
        "-",
        "-",
    ]
    assert fmt.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert fmt.sparkline([0.0, 0.0]) == "▁▁"


async def test_unparsable_metrics_keep_the_health_document(
    autojump_clock: trio.testing.MockClock,
) -> None:
    out = io.StringIO()
    with trio.move_on_after(0.5):
        await run_tui(
            lambda: {"status": "ok"},
            metrics=lambda: "<html>not metrics</html>",
            console=Console(file=out, width=120),
        )
    assert out.getvalue().splitlines() == [
        "error: metrics: not Prometheus text (invalid metric name:<html>not metrics</html>)"
    ]


def test_an_error_field_is_shown_only_when_there_is_an_error() -> None:
    document = health(0)
    document["journal"] = {"records": 5, "upload_backlog": 0, "error": ""}
    document["spool"] = {"state": "ok", "error": "", "reading_paused": False}
    document["clock"] = {"offset_s": None}
    state = TuiState()
    state.observe(document, now=100.0)
    lines = lines_of(state)
    assert lines[1] == "journal 5 records · 0 upload backlog"
    assert "spool state ok · reading paused no" in lines
    assert not [line for line in lines if line.startswith("clock")]  # nothing to say
    document["journal"]["error"] = "disk full"
    document["spool"]["error"] = None
    state.observe(document, now=102.0)
    lines = lines_of(state)
    assert lines[1] == "journal 5 records · 0 upload backlog · error disk full"
    assert "spool state ok · reading paused no" in lines


def test_refused_subscriptions_have_a_column_of_their_own() -> None:
    # 259 markets to carry: the exchange took 40 and refused 219 (the connection is live)
    document = health(0)
    document["connections"] = [
        {
            "name": "orderbook-0",
            "channel": "orderbook_delta",
            "state": "live",
            "markets": 259,
            "subscribed": 40,
            "refused": 219,
            "messages": 5,
            "reconnects": 0,
        },
        {"name": "trade-0", "channel": "trade", "state": "live", "markets": None,
         "subscribed": None, "refused": 0, "messages": 2, "reconnects": 0},
    ]  # fmt: skip
    state = TuiState()
    state.observe(document, now=100.0)
    lines = lines_of(state)
    start = lines.index("connections")
    assert lines[start + 1 : start + 5] == [
        "connection    channel           state   markets   subscribed   refused   msgs   "
        "msgs/s   last msg   reconnects",
        "─" * 110,
        "orderbook-0   orderbook_delta   live        259           40       219      5        "
        "-          -            0",
        "trade-0       trade             live          -            -         0      2        "
        "-          -            0",
    ]
    # an 80-column terminal: the header is one line
    console = Console(record=True, width=80, file=io.StringIO())
    console.print(render(state))
    assert console.export_text().splitlines()[0].rstrip() == (
        "kalshi gatherer g-1   status ok   uptime 1h02m03s   db up"
    )


def test_an_up_nothing_answered_yet_reads_unknown() -> None:
    # The dedup's production, gatherers and export before an operation answered: "up": null
    # is unknown (neither up nor down), as the store's db state; it was left out or "-".
    state = TuiState()
    state.observe(
        {
            "status": "degraded",
            "service": "dedup",
            "production": {"up": None, "error": ""},
            "gatherers": {"g1": {"up": None, "error": ""}, "g2": {"up": False, "error": "x"}},
            "export": {"up": None, "error": "", "failures": 0, "target": "/out"},
        },
        now=0.0,
    )
    assert lines_of(state) == [
        "kalshi dedup   status degraded",
        "",
        "production up unknown",
        "",
        "gatherers",
        "name   up        error",
        "─" * 22,
        "g1     unknown",
        "g2     no        x",
        "",
        "export up unknown · 0 failures · target /out",
    ]
