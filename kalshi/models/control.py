"""Replies to WebSocket commands, and the commands themselves."""

from __future__ import annotations

from attrs import frozen

__all__ = [
    "Command",
    "ErrorReply",
    "OkReply",
    "Subscribed",
    "SubscriptionInfo",
    "SubscriptionList",
    "Unsubscribed",
]


@frozen
class Subscribed:
    """``subscribed``: one per channel of a subscribe command. An older shape carries no
    ``msg`` (``{"type":"subscribed","id":1}``, sid at the top level or nowhere): then
    ``channel`` is None and ``sid`` is the envelope's, if any; the command the ``id``
    answers says which channel it was."""

    channel: str | None
    sid: int | None


@frozen
class OkReply:
    """``ok`` to update_subscription: ``market_tickers`` is the full list after the update."""

    market_tickers: tuple[str, ...] | None = None


@frozen
class SubscriptionInfo:
    channel: str
    sid: int


@frozen
class SubscriptionList:
    """``ok`` to list_subscriptions (its ``msg`` is an array)."""

    subscriptions: tuple[SubscriptionInfo, ...]


@frozen
class Unsubscribed:
    """``unsubscribed``: the envelope carries the sid and seq."""


@frozen
class ErrorReply:
    """``error``: code and text as in the reference (§2.3)."""

    code: int
    message: str
    market_ticker: str | None = None


@frozen
class Command:
    """A client command ``{"id", "cmd", "params"}``."""

    id: int
    cmd: str
    params: dict[str, object] | None = None
