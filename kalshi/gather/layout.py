"""Which connections exist and which markets each one carries.

The seed's layout: ``websocket.ticker_connections``, ``trade_connections``,
``lifecycle_connections`` and ``orderbook_connections``. Market-scoped channels spread their
markets evenly (each new market goes to the connection with the fewest, among those whose
subscription still takes markets: error 26 moves a connection's refused markets to the
others).

An unsharded gatherer subscribes ``ticker`` and ``trade`` for the whole exchange, without a
market list (kalshi-api.md §2.2, §5): one connection each, whatever the configured count, so
no command or ``ok`` reply grows with the number of markets and markets the registry has not
seen yet are caught too. A second whole-exchange connection would only double every row. A
sharded gatherer lists its markets, spread over the configured connections.

Lifecycle: ``lifecycle_connections`` each of ``market_lifecycle_v2`` (every market but
combos) and of ``multivariate_market_lifecycle`` (combo markets only, kalshi-api.md §3.6), so
a combo created mid-run is registered, listed in ``markets`` and subscribed at once.
"""

from __future__ import annotations

from kalshi.gather.connection import Connection
from kalshi.gather.context import GatherContext

__all__ = ["Layout"]


class _Pool:
    def __init__(self, connections: list[Connection]) -> None:
        self.connections = connections
        self.owner: dict[str, Connection] = {}
        for conn in connections:
            conn.on_refused = self.move

    def add(self, tickers: list[str]) -> None:
        batches: dict[int, list[str]] = {}
        sizes = [len(c.desired) for c in self.connections]
        room = [i for i, c in enumerate(self.connections) if not c.full] or list(
            range(len(self.connections))
        )
        for ticker in tickers:
            if ticker in self.owner:
                continue
            index = min(room, key=sizes.__getitem__)
            sizes[index] += 1
            self.owner[ticker] = self.connections[index]
            batches.setdefault(index, []).append(ticker)
        for index, batch in batches.items():
            self.connections[index].add(batch)

    def remove(self, tickers: list[str]) -> None:
        for ticker in tickers:
            conn = self.owner.pop(ticker, None)
            if conn is not None:
                conn.remove([ticker])

    def move(self, full: Connection, tickers: list[str]) -> list[str]:
        """``full``'s subscription refused ``tickers`` (error 26): give them to the
        connections with room; returns those no connection can take."""
        if not any(c is not full and not c.full for c in self.connections):
            return tickers
        mine = [t for t in tickers if self.owner.get(t) is full]
        full.remove(mine)
        for ticker in mine:
            del self.owner[ticker]
        self.add(mine)
        return [t for t in tickers if t not in mine]


class Layout:
    def __init__(self, ctx: GatherContext, *, sharded: bool) -> None:
        ws = ctx.cfg.websocket
        self.ctx = ctx
        self.connections: list[Connection] = []
        self.pools: dict[str, _Pool] = {}
        plan = (
            ("orderbook_delta", "orderbook", ws.orderbook_connections),
            ("trade", "trade", ws.trade_connections),
            ("ticker", "ticker", ws.ticker_connections),
            ("market_lifecycle_v2", "lifecycle", ws.lifecycle_connections),
            # combo (KXMVE...) markets' lifecycle comes on this channel only (§3.5, §3.6)
            ("multivariate_market_lifecycle", "combo-lifecycle", ws.lifecycle_connections),
        )
        for channel, label, count in plan:
            scoped = channel == "orderbook_delta" or (channel in ("trade", "ticker") and sharded)
            if channel in ("trade", "ticker") and not sharded:
                count = min(count, 1)
            conns = [Connection(ctx, f"{label}-{i}", channel, scoped=scoped) for i in range(count)]
            self.connections.extend(conns)
            if scoped and conns:
                self.pools[channel] = _Pool(conns)

    def on_markets(self, live: list[str], retired: list[str]) -> None:
        for pool in self.pools.values():
            if live:
                pool.add(live)
            if retired:
                pool.remove(retired)
        if retired:
            self.ctx.retire(retired)  # their refusal gaps end: nothing more to record

    def resnapshot(self, tickers: list[str], reason: str = "gap") -> None:
        """Fresh snapshots of ``tickers``, each asked by the connection that carries it
        (``reason``: :meth:`Connection.resnapshot`)."""
        pool = self.pools.get("orderbook_delta")
        if pool is None:
            return
        for ticker in tickers:
            conn = pool.owner.get(ticker)
            if conn is not None:
                conn.resnapshot([ticker], reason)
