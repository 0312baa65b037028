"""TuiState -> a rich renderable: the live screen. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from kalshi.tui import _doc
from kalshi.tui import _format as fmt
from kalshi.tui.state import Rates, TuiState

__all__ = ["render"]

_KNOWN = frozenset(
    {
        "status",
        "gatherer_id",
        "service",
        "uptime_s",
        "connections",
        "channels",
        "tables",
        "db",
        "markets",
        "gaps",
        "resnapshots",
        "decode_errors",
        "journal",
        "top_markets",
    }
)
_COUNTERS = ("gaps", "resnapshots", "decode_errors")
_STATE_STYLE = {
    "live": "green",
    "idle": "green",
    "connecting": "yellow",
    "subscribing": "yellow",
}
_TABLE_COLUMNS = (
    ("queue", "queue"),
    ("spool_rows", "spool"),
    ("rows_written", "written"),
    ("dead_letters", "dead"),
)
_GAP = 4  # columns between tables side by side
_TOP_MARKETS = 10
_METRIC_ROWS = 12


def render(state: TuiState) -> RenderableType:
    """The whole screen for ``state``; tolerant of any missing or unexpected key."""
    parts: list[RenderableType] = []
    if state.error is not None:
        parts.append(Text(f"error: {state.error}", style="bold red"))
    if not state.samples:
        parts.append(Text("waiting for the first health document"))
        return Group(*parts)
    health = state.health
    parts.append(_header(health))
    # the journal on a line of its own: the header stays one line on an 80-column terminal
    journal = _dict_line(health["journal"]) if isinstance(health.get("journal"), Mapping) else ""
    if journal:
        parts.append(Text("journal " + journal))
    line = _counters_line(health)
    if line:
        parts.append(Text(line))
    sections = [
        _connections(health.get("connections"), state.connections),
        _side_by_side(
            _rated_table("channel", health.get("channels"), state.channels, "msgs"),
            _rated_table("table", health.get("tables"), state.tables, "rows", _TABLE_COLUMNS),
        ),
        _side_by_side(_top_markets(health.get("top_markets")), _metrics(state)),
        *_others(health),
    ]
    for section in sections:
        if section is not None:
            parts.extend((Text(""), section))
    return Group(*parts)


def _title(health: Mapping[str, Any]) -> str:
    if "gatherer_id" in health:
        return f"gatherer {health['gatherer_id']}"
    if "service" in health:
        return str(health["service"])
    for key, value in health.items():
        if key.endswith("_id") and isinstance(value, str):
            return f"{key[:-3]} {value}"
    return "service"


def _header(health: Mapping[str, Any]) -> Text:
    text = Text.assemble(("kalshi " + _title(health), "bold"))
    if "status" in health:
        status = str(health["status"])
        text.append("   status ")
        text.append(status, style="bold green" if status == "ok" else "bold red")
    if "uptime_s" in health:
        text.append(f"   uptime {fmt.duration(health['uptime_s'])}")
    db = health.get("db")
    if isinstance(db, Mapping) and "state" in db:
        state = str(db["state"])
        text.append("   db ")
        text.append(state, style="green" if state == "up" else "bold red")
    return text


def _up(value: object) -> str:
    """An ``up`` field: ``yes``/``no``, and ``unknown`` for ``None`` (no operation has
    answered yet: unknown is neither up nor down, as the store's ``db`` state)."""
    return "unknown" if value is None else fmt.scalar(value)


def _dict_line(values: Mapping[str, Any]) -> str:
    """``{"tracked": 120, "bytes": 5600000, "pressure": False}`` -> ``120 tracked · ...``.

    A key without a value (``None`` or ``""``, e.g. ``"error": ""`` when there is none) is
    left out, not shown as an empty label; but ``"up": None`` (nothing answered yet: the
    dedup's production, gatherers and export) reads ``up unknown`` (:func:`_up`)."""
    items = []
    for key, value in values.items():
        if key == "up" and value is None:
            items.append(f"up {_up(value)}")
            continue
        if value is None or value == "":
            continue
        label = key.replace("_", " ")
        if key == "bytes":
            items.append(fmt.size(value))
        elif isinstance(value, bool):
            items.append(f"{label} {fmt.scalar(value)}")
        elif isinstance(value, int | float):
            items.append(f"{fmt.count(value)} {label}")
        else:
            items.append(f"{label} {fmt.scalar(value)}")
    return " · ".join(items)


def _counters_line(health: Mapping[str, Any]) -> str:
    parts = []
    if isinstance(health.get("markets"), Mapping):
        parts.append("markets " + _dict_line(health["markets"]))
    for key in _COUNTERS:
        if key in health:
            parts.append(f"{key.replace('_', ' ')} {fmt.count(health[key])}")
    connections = _doc.records(health.get("connections"))
    if connections:
        parts.append(f"reconnects {fmt.count(_doc.total(connections, 'reconnects'))}")
    return "   ".join(parts)


def _table(title: str) -> Table:
    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )


def _connections(value: object, rates: Rates) -> Table | None:
    connections = _doc.records(value)
    if not connections:
        return None
    table = _table("connections")
    for label in ("connection", "channel", "state"):
        table.add_column(label)
    # markets a connection should carry, then how many the exchange took and refused
    scoped = [key for key in ("subscribed", "refused") if any(key in c for c in connections)]
    for label in ("markets", *scoped, "msgs", "msgs/s", "last msg", "reconnects"):
        table.add_column(label, justify="right")
    for conn in connections:
        name = str(conn.get("name"))
        state = str(conn.get("state", fmt.NONE))
        refused = conn.get("refused")
        table.add_row(
            name,
            fmt.scalar(conn.get("channel")),
            Text(state, style=_STATE_STYLE.get(state, "bold red")),
            fmt.count(conn.get("markets")),
            *(
                Text(
                    fmt.count(conn.get(key)),
                    style="bold red" if key == "refused" and refused else "",
                )
                for key in scoped
            ),
            fmt.count(conn.get("messages")),
            fmt.rate(rates.current.get(name)),
            fmt.age(conn.get("last_message_age_s")),
            fmt.count(conn.get("reconnects")),
        )
    return table


def _columns(
    entries: Any, preferred: tuple[tuple[str, str], ...], skip: str
) -> list[tuple[str, str]]:
    columns = [(key, label) for key, label in preferred if any(key in e for e in entries)]
    seen = {key for key, _ in preferred} | {skip}
    for entry in entries:
        for key in entry:
            if key not in seen:
                seen.add(key)
                columns.append((key, key.replace("_", " ")))
    return columns


def _rated_table(
    what: str,
    value: object,
    rates: Rates,
    unit: str,
    preferred: tuple[tuple[str, str], ...] = (),
) -> Table | None:
    """A ``{name: {...}}`` section: its numbers, then the rate (``unit``/s) and its history.

    The counted key's total is a column of its own (``unit``) unless ``preferred`` shows it.
    """
    if not isinstance(value, Mapping) or not value:
        return None
    counted = rates.key
    entries = [e if isinstance(e, Mapping) else {} for e in value.values()]
    columns = _columns(entries, preferred, counted)
    if all(key != counted for key, _ in preferred):
        columns.insert(0, (counted, unit))
    table = _table(what + "s")
    table.add_column(what)
    for _, label in columns:
        table.add_column(label, justify="right")
    table.add_column(f"{unit}/s", justify="right")
    table.add_column("history")
    for name, entry in zip(value, entries, strict=True):
        cells = [str(name)]
        cells.extend(
            _up(entry.get(key)) if key == "up" else fmt.scalar(entry.get(key)) for key, _ in columns
        )
        cells.append(fmt.rate(rates.current.get(str(name))))
        cells.append(fmt.sparkline(rates.series.get(str(name), ())))
        table.add_row(*cells)
    return table


def _top_markets(value: object) -> Table | None:
    markets = _doc.records(value)[:_TOP_MARKETS]
    if not markets:
        return None
    table = _table("top markets")
    table.add_column("ticker")
    for label in ("msgs", "bid", "ask"):
        table.add_column(label, justify="right")
    for market in markets:
        table.add_row(
            fmt.scalar(market.get("ticker")),
            fmt.count(market.get("messages")),
            fmt.price(market.get("best_bid")),
            fmt.price(market.get("best_ask")),
        )
    return table


def _metrics(state: TuiState) -> Table | None:
    if not state.metrics:
        return None
    table = _table("metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("/s", justify="right")
    for name in sorted(state.metrics)[:_METRIC_ROWS]:
        total = state.metrics[name]
        per_second = state.counters.current.get(name) if total.kind == "counter" else None
        table.add_row(name, fmt.count(total.value), fmt.rate(per_second))
    return table


def _side_by_side(*tables: Table | None) -> RenderableType | None:
    present = [t for t in tables if t is not None]
    if len(present) <= 1:
        return present[0] if present else None
    return _SideBySide(present)


class _SideBySide:
    """Tables next to each other when the console is wide enough, else one under another."""

    def __init__(self, tables: list[Table]) -> None:
        self.tables = tables

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        widths = [Measurement.get(console, options, t).maximum for t in self.tables]
        if sum(widths) + _GAP * (len(widths) - 1) <= options.max_width:
            grid = Table.grid(padding=(0, _GAP))
            for _ in self.tables:
                grid.add_column(vertical="top")
            grid.add_row(*self.tables)
            yield grid
            return
        for index, table in enumerate(self.tables):
            if index:
                yield Text("")
            yield table


def _others(health: Mapping[str, Any]) -> list[RenderableType]:
    """Keys this screen does not know (another service's document), drawn generically."""
    parts: list[RenderableType] = []
    scalars: list[str] = []
    for key, value in health.items():
        if key in _KNOWN:
            continue
        if (
            isinstance(value, Mapping)
            and value
            and all(isinstance(v, Mapping) for v in value.values())
        ):
            parts.append(_generic_table(key, list(value.items())))
        elif isinstance(value, Mapping):
            line = _dict_line(value)
            if line:  # a mapping of nothing says nothing
                parts.append(Text(f"{key.replace('_', ' ')} {line}"))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            parts.append(_generic_table(key, [(None, v) for v in value]))
        else:
            scalars.append(f"{key.replace('_', ' ')} {fmt.scalar(value)}")
    if scalars:
        parts.insert(0, Text("   ".join(scalars)))
    return parts


def _generic_table(title: str, rows: list[tuple[object, Mapping[str, Any]]]) -> Table:
    entries = [entry for _, entry in rows]
    columns = _columns(entries, (), "")
    named = any(name is not None for name, _ in rows)
    table = _table(title.replace("_", " "))
    if named:
        table.add_column("name")
    for key, label in columns:
        numeric = any(
            isinstance(e.get(key), int | float) and not isinstance(e.get(key), bool)
            for e in entries
        )
        table.add_column(label, justify="right" if numeric else "left")
    for name, entry in rows:
        cells = [str(name)] if named else []
        cells.extend(
            _up(entry.get(key)) if key == "up" else fmt.scalar(entry.get(key)) for key, _ in columns
        )
        table.add_row(*cells)
    return table
