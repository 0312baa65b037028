"""The one exception tree of ``kalshi``.

Every error the library raises on purpose is a :class:`KalshiError`; foreign
exceptions (httpx, trio-websocket, psycopg, botocore) are translated at the
boundary of ``net/``, ``store/`` and ``dedup/``::

    KalshiError
    ├── ConfigError          bad configuration; carries one line per problem
    ├── AuthError            missing, unreadable or wrong-type signing key
    ├── DecodeError          a frame or REST body that does not fit the protocol
    │   └── UnitError        a decimal string that does not fit our integer unit
    ├── BookError            an impossible order-book state (negative size, crossed)
    ├── NetError             transport failures (all transient, retried)
    │   ├── ConnectionLost   the socket closed, errored or went silent
    │   ├── RateLimited      HTTP 429 / WS error 27
    │   └── HttpError        any other non-2xx REST answer
    ├── PaginationError      a paginated REST call that repeats a cursor or passes the page cap
    ├── StoreError           database failures
    │   ├── DatabaseUnavailable  cannot reach PostgreSQL (transient)
    │   └── GathererError    a gatherer database failed under the deduplicator (names it)
    ├── JournalError         a journal file that cannot be written or read
    └── ExportError          object-storage failures
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BookError",
    "ConfigError",
    "ConnectionLost",
    "DatabaseUnavailable",
    "DecodeError",
    "ExportError",
    "GathererError",
    "HttpError",
    "JournalError",
    "KalshiError",
    "NetError",
    "PaginationError",
    "RateLimited",
    "StoreError",
    "UnitError",
]


class KalshiError(Exception):
    """Base of every error raised on purpose by this package."""


class ConfigError(KalshiError):
    """A configuration that cannot be used.

    ``problems`` holds one human-readable line per problem, each naming the key
    path (``websocket.reconnect_backoff: expected a duration like 500ms ...``).
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class AuthError(KalshiError):
    """The request-signing key is missing, unreadable or of the wrong type, or the exchange
    refused the signature (HTTP 401/403). ``server_date`` (the answer's ``Date`` header) and
    ``body`` are kept when the exchange answered, so the caller can tell a skewed clock
    (:func:`kalshi.net.clock.clock_hint`)."""

    def __init__(self, message: str, *, server_date: str = "", body: str = "") -> None:
        self.server_date = server_date
        self.body = body
        super().__init__(message)


class DecodeError(KalshiError):
    """A frame or body that does not fit the protocol."""


class UnitError(DecodeError):
    """A decimal string that does not fit our integer unit exactly."""


class BookError(KalshiError):
    """An order book reached an impossible state."""


class NetError(KalshiError):
    """A transient network failure."""


class ConnectionLost(NetError):
    """The WebSocket closed, failed, or stayed silent past its deadline.

    ``code`` is the peer's close code (RFC 6455 §7.4) when it sent a close frame, else None.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)

    @property
    def permanent(self) -> bool:
        """A close code that says retrying cannot help: protocol, data, policy, size or
        extension errors (1002, 1003, 1007-1010) and the application range 4000-4999.
        1000/1001/1011-1014 and a close without a frame are transient."""
        code = self.code
        return code is not None and (code in _PERMANENT_CLOSE or 4000 <= code <= 4999)


_PERMANENT_CLOSE = frozenset({1002, 1003, 1007, 1008, 1009, 1010})


class RateLimited(NetError):
    """The exchange answered 429 (REST) or error 27 (WebSocket)."""


class PaginationError(KalshiError):
    """A paginated REST call that would never end: the exchange answered a cursor it had
    already given (a loop), or the pages passed the cap. Not transient: retrying at once
    would loop again."""


class HttpError(NetError):
    """A REST call answered with a non-2xx status other than 429."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


class StoreError(KalshiError):
    """A database operation failed."""


class DatabaseUnavailable(StoreError):
    """PostgreSQL cannot be reached right now; callers spool and retry."""


class GathererError(StoreError):
    """A gatherer's database failed while the deduplicator read it: ``gatherer_id`` names
    the gatherer, ``cause`` is the :class:`StoreError` (``DatabaseUnavailable`` when it
    cannot be reached). The pass goes on without that gatherer; production is not at fault.
    """

    def __init__(self, gatherer_id: str, cause: StoreError) -> None:
        self.gatherer_id = gatherer_id
        self.cause = cause
        super().__init__(f"gatherer {gatherer_id} database: {cause}")


class JournalError(KalshiError):
    """A journal file cannot be written or read."""


class ExportError(KalshiError):
    """Object storage refused or failed an operation."""
