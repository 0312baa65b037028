"""What the WebSocket decoder returns for one frame.

``Message`` for every message type we know; ``Unrecognized`` for a well-formed frame of a
type we do not know; ``Invalid`` for a frame that is not JSON or does not fit the protocol.
The last two keep the raw bytes so callers can count and journal them.
"""

from __future__ import annotations

import msgspec
from attrs import frozen

from kalshi.models.book import BookDelta, BookSnapshot
from kalshi.models.control import (
    ErrorReply,
    OkReply,
    Subscribed,
    SubscriptionList,
    Unsubscribed,
)
from kalshi.models.lifecycle import EventFeeUpdate, EventLifecycle, LifecycleEvent
from kalshi.models.ticker import Ticker
from kalshi.models.trade import Trade

__all__ = ["Body", "Decoded", "Invalid", "Message", "Unrecognized"]

Body = (
    BookSnapshot
    | BookDelta
    | Trade
    | Ticker
    | LifecycleEvent
    | EventLifecycle
    | EventFeeUpdate
    | Subscribed
    | OkReply
    | SubscriptionList
    | Unsubscribed
    | ErrorReply
)


class Message(msgspec.Struct, frozen=True, gc=False):
    """A decoded server frame: the envelope (``type``, ``sid``, ``seq``, ``id``) and body."""

    type: str
    body: Body
    sid: int | None = None
    seq: int | None = None
    id: int | None = None


@frozen
class Unrecognized:
    """Well-formed JSON of an unknown ``type``."""

    raw: bytes
    type: str | None


@frozen
class Invalid:
    """Not JSON, or a known type whose fields do not fit; ``error`` says what is wrong."""

    raw: bytes
    error: str


Decoded = Message | Unrecognized | Invalid
