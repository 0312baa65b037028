"""The cyclopts application object and helpers shared by every command."""

from __future__ import annotations

import logging
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import trio
from cyclopts import App, CycloptsError, validators
from rich.console import Console
from rich.text import Text

from kalshi import __version__
from kalshi.config import LoggingConfig, load_config
from kalshi.errors import ConfigError, KalshiError, UnitError
from kalshi.models.units import parse_rfc3339_us

if TYPE_CHECKING:
    from kalshi.http import Port

__all__ = [
    "MARKETS",
    "NON_NEGATIVE",
    "POSITIVE",
    "Interrupted",
    "Stopped",
    "UsageError",
    "app",
    "check_http_url",
    "check_port",
    "config_fail",
    "configure_logging",
    "console",
    "err_console",
    "expected_failure",
    "fail",
    "load_or_exit",
    "not_implemented",
    "operands",
    "parse_time",
    "ports_first",
    "redact_url",
    "run_until_signal",
    "stop_early",
    "stop_on_signals",
]

# soft_wrap: a line is never wrapped at the console's width (80 columns without a terminal),
# so a URL, a key id or a ``rows written`` dict stays one line a script can read.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _usage_line(exc: CycloptsError) -> Text:
    """A malformed command line (an unknown command or option, a value cyclopts cannot
    convert) as the one ``error: ...`` line every other usage error prints, instead of
    cyclopts' boxed panel; cyclopts still exits 2."""
    return Text.assemble(("error:", "bold red"), " ", " ".join(str(exc).split()))


app = App(
    name="kalshi",
    help="Record the complete public market data of the Kalshi exchange, tick-perfect.",
    version=__version__,
    error_console=err_console,
    error_formatter=_usage_line,
)

# The bounds of numeric options, checked by cyclopts while it parses the command line
# (before any work starts): a value out of bounds is one ``error: Invalid value "-3" for
# --markets. Must be >= 0.`` line and exit 2, as for any malformed command line. A rule
# between options (``--active`` <= ``--markets``) is a UsageError, the same line and exit.
NON_NEGATIVE = validators.Number(gte=0)
POSITIVE = validators.Number(gt=0)
MARKETS = validators.Number(gte=0, lte=250_000)  # the simulator's universe (docs/simulator.md)

T = TypeVar("T")
_log = logging.getLogger("kalshi.cli")


class UsageError(Exception):
    """A command line or configuration a command cannot run with (a bad option value, a
    missing option, no private key): :func:`kalshi.cli.main` prints one ``error:`` line
    and exits 2, as for a config error or a malformed command line. Raised before any
    work starts (no database started, nothing written)."""


def redact_url(url: str) -> str:
    """``url`` with its password (``user:PASSWORD@``) shown as ``***``, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def check_port(option: str, port: int) -> int:
    """``port`` when it is a TCP port (0-65535; 0: any free one), else a :class:`UsageError`
    naming ``option`` (the socket layer would wrap 70000 to 4464, or fail on -1 with a
    resolver's message)."""
    if not 0 <= port <= 65535:
        raise UsageError(f"{option} must be between 0 and 65535, got {port}")
    return port


def ports_first(*wanted: Port) -> None:
    """A long-running command's first step, before any work that writes (a database
    started or migrated, a key, truth or spool file): bind each ``(host, port, what)`` it
    will serve on and let it go (:func:`kalshi.http.check_ports`; port 0 skipped). A taken
    port raises ``OSError`` naming ``what``, the host and the port: one ``error:`` line
    and exit 1 (:func:`kalshi.cli.main`)."""
    from kalshi.http import check_ports  # imported by the commands that serve, not by all

    trio.run(partial(check_ports, *wanted))


# An integer time is µs since the epoch, from 2000-01-01 to 2100-01-01 (exclusive): a
# number outside is another unit (ms, s, ns) or a typo, refused rather than read as 1970.
US_FROM, US_UNTIL = 946_684_800_000_000, 4_102_444_800_000_000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_time(text: str, option: str) -> int:
    """Every time option of the command line (``replay --from/--to``, ``snapshot --at``,
    ``export --until``, ``sim --start``), as Unix µs: an RFC 3339 time
    (``2026-11-24T22:59:00Z``), a date (``2026-11-24``: its midnight UTC) or an integer
    count of µs since the epoch from 2000-01-01 to 2100-01-01, exclusive (docs/replay.md).
    Anything else is a :class:`UsageError` naming ``option`` and the forms (an integer
    outside the range: the unit it was probably in)."""
    if text.lstrip("-").isdigit():
        value = int(text)
        if not US_FROM <= value < US_UNTIL:
            raise UsageError(
                f"{option}: an integer time is µs since the epoch (from {US_FROM}, "
                f"2000-01-01, to {US_UNTIL}, 2100-01-01), got {text} (ms, s or ns?)"
            )
        return value
    try:
        return parse_rfc3339_us(f"{text}T00:00:00Z" if _DATE.fullmatch(text) else text)
    except UnitError:
        raise UsageError(
            f"{option}: expected an RFC 3339 time (2026-11-24T22:59:00Z), a date"
            f" (2026-11-24, midnight UTC) or µs since the epoch, got {text!r}"
        ) from None


def check_http_url(option: str, url: str) -> str:
    """``url`` when it is an ``http://`` or ``https://`` address with a host and, if any, a
    port 0-65535; else a :class:`UsageError` naming ``option``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        raise UsageError(f"{option}: port must be between 0 and 65535, got {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{option}: expected an http:// or https:// address, got {url!r}")
    return url


def operands(values: list[str], argv: list[str] | None = None) -> list[str]:
    """``values`` of a positional list that takes ``-`` (stdin), checked as cyclopts checks
    any other: a value starting with ``-`` (other than ``-`` itself) is an unknown option,
    a :class:`UsageError` ``Unknown option: --nosuch.`` (exit 2), unless it follows ``--``
    on the command line (``argv``, default ``sys.argv[1:]``). A file named ``-x`` is read
    as ``./-x`` or after ``--``. cyclopts has no rule for "``-`` alone, but no other
    leading hyphen" (``allow_leading_hyphen`` lets every ``--typo`` through as a file)."""
    argv = sys.argv[1:] if argv is None else argv
    after = Counter(argv[argv.index("--") + 1 :] if "--" in argv else [])
    for value in values:
        if value != "-" and value.startswith("-"):
            if after[value] == 0:
                raise UsageError(f"Unknown option: {value}.")
            after[value] -= 1
    return values


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise SystemExit(code)


def expected_failure(exc: BaseException) -> str | None:
    """One line for ``exc`` when every error inside it (through Trio's exception groups and
    ``SystemExit``-free chains) is expected: a :class:`KalshiError` or an ``OSError``;
    distinct messages are joined with ``; ``. ``None`` for anything else (a bug: show the
    traceback)."""
    leaves: list[BaseException] = []

    def walk(node: BaseException) -> None:
        if isinstance(node, BaseExceptionGroup):
            for sub in node.exceptions:
                walk(sub)
        else:
            leaves.append(node)

    walk(exc)
    lines: list[str] = []
    for leaf in leaves:
        if isinstance(leaf, KalshiError):
            line = str(leaf)
        elif isinstance(leaf, OSError):
            where = f"{leaf.filename}: " if leaf.filename else ""
            line = f"{where}{leaf.strerror or leaf}"
        else:
            return None
        if line not in lines:
            lines.append(line)
    return "; ".join(lines) if lines else None


def load_or_exit(path: Path | None, kind: type[T], **kwargs: Any) -> T:
    """Load a config or exit 2 with one line per problem (no traceback)."""
    try:
        return load_config(path, kind, **kwargs)
    except ConfigError as exc:
        config_fail(path, exc.problems)


def config_fail(path: Path | None, problems: list[str]) -> NoReturn:
    """Print ``config error: PATH: PROBLEM`` per problem (the path once, also when the
    problem already names it) to stderr and exit 2, as every config error does."""
    for problem in problems:
        where = f"{path}: " if path and not problem.startswith(f"{path}:") else ""
        print(f"config error: {where}{problem}", file=sys.stderr)
    raise SystemExit(2)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Credentials as a library's debug output spells them: the request headers of the exchange's
# signed requests (kalshi-api.md §1.2, "Request signing"), any ``Authorization`` header, and the
# password of a ``scheme://user:PASSWORD@host`` URL.
_SECRETS = re.compile(
    r"(?P<head>(?:KALSHI-ACCESS-(?:KEY|SIGNATURE)|Authorization)['\"]?\s*[:=]\s*['\"]?)"
    r"(?:(?:Bearer|Basic)\s+)?[^\s,;'\"}]+"
    r"|(?P<url>://[^:/@\s]+):[^@\s]*@",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every credential :data:`_SECRETS` knows shown as ``***``:
    ``KALSHI-ACCESS-KEY: k`` -> ``KALSHI-ACCESS-KEY: ***``, ``postgresql://u:pw@h`` ->
    ``postgresql://u:***@h``."""

    def hide(match: re.Match[str]) -> str:
        head = match.group("head")
        return f"{head}***" if head is not None else f"{match.group('url')}:***@"

    return _SECRETS.sub(hide, text)


class RedactingFilter(logging.Filter):
    """A handler filter that formats each record's message once and redacts it
    (:func:`redact`), whichever logger wrote it: no credential reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(cfg: LoggingConfig, *, quiet: bool = False) -> None:
    """The root logger as ``logging.level``/``logging.format`` say: ``text`` lines or ``json``
    objects (python-json-logger: ``asctime``, ``levelname``, ``name``, ``message`` and any
    ``extra``). ``quiet`` (a live screen owns the terminal) shows warnings and above only.

    ``logging.level`` is the level of our own loggers (``kalshi.*``); every other library
    (websockets, httpx, httpcore, botocore, urllib3, psycopg...) logs warnings and above
    only, whatever the level: at ``debug`` they write a line per frame or request, with its
    signed headers. Every line, whoever writes it, has its credentials redacted
    (:class:`RedactingFilter`).
    """
    handler = logging.StreamHandler()
    if cfg.format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter())
    level = logging.WARNING if quiet else getattr(logging, cfg.level.upper(), logging.INFO)
    logging.basicConfig(level=max(level, logging.WARNING), handlers=[handler])
    logging.getLogger("kalshi").setLevel(level)


def not_implemented(command: str) -> NoReturn:
    fail(f"`kalshi {command}` is not implemented yet", code=3)


class Stopped(BaseException):
    """SIGTERM outside a command's event loop (its start: the config, an embedded
    PostgreSQL, migrations); ``args[0]`` is the signal number. A ``BaseException``, so no
    ``except Exception`` on the way swallows it; every ``with`` unwinds (an embedded
    PostgreSQL is stopped)."""


# SIGTERM that came inside trio.run before stop_on_signals listened: it takes them over.
_early: list[int] = []
# The signals that cancelled a stop_on_signals nursery (run_until_signal reads them).
_stopped_by: list[int] = []


class Interrupted(BaseException):
    """A one-shot command's work cancelled by SIGINT or SIGTERM (:func:`run_until_signal`);
    ``args[0]`` is the signal number. What it committed before stays committed."""


def run_until_signal(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``trio.run(fn, *args)`` for a one-shot command (a pass, an export, a request) that
    SIGINT or SIGTERM stops at once: ``fn`` is cancelled and :class:`Interrupted` raised,
    which :func:`kalshi.cli.main` reports in one line with exit 1 (the work was not done).
    Without it a SIGTERM waited for the work's end (tester F1)."""
    done: list[T] = []

    async def main() -> None:
        async with stop_on_signals() as nursery:
            done.append(await fn(*args))
            nursery.cancel_scope.cancel()  # stops listening

    trio.run(main)
    if not done:
        raise Interrupted(_stopped_by[-1])
    return done[0]


def _on_early_signal(signum: int, frame: object) -> None:
    if trio.lowlevel.in_trio_run():  # raising here would land inside Trio's own code
        _early.append(signum)
        return
    raise Stopped(signum)


def stop_early() -> None:
    """From the process's first instant, SIGTERM stops a command cleanly (raises
    :class:`Stopped`, which :func:`kalshi.cli.main` reports) instead of killing it silently
    with exit 143; :func:`stop_on_signals` takes it over once the loop runs (tester F5)."""
    signal.signal(signal.SIGTERM, _on_early_signal)


@asynccontextmanager
async def stop_on_signals(
    duration: float | None = None, *, soft: trio.Event | None = None
) -> AsyncIterator[trio.Nursery]:
    """A nursery that SIGINT or SIGTERM (or ``duration`` seconds) cancels cleanly: the one
    way every long-running command (gather, demo, dedup, sim, status, replay) stops.

    The services in it flush on cancellation; the command then exits 0. With ``soft``, the
    first signal only sets it (the work stops by itself at a safe point and reports) and a
    second cancels. A SIGTERM that came before the receiver listened (:func:`stop_early`)
    acts at once.
    """

    def stop(signum: int) -> bool:
        """Act on ``signum``; whether the nursery was cancelled."""
        if soft is not None and not soft.is_set():
            soft.set()
            return False
        _log.warning("%s: stopping", signal.Signals(signum).name)
        _stopped_by.append(signum)
        nursery.cancel_scope.cancel()
        return True

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    if stop(signum):
                        return

            nursery.start_soon(watch)
            if _early:  # came before the receiver listened
                stop(_early.pop())
            if duration is not None:
                nursery.cancel_scope.deadline = trio.current_time() + duration
            yield nursery
