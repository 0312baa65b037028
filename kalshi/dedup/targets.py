"""Where exported files go: an S3 bucket (boto3) or a local directory.

Both replace a key atomically: S3 makes a completed PUT or multipart upload visible at
once, and the local target writes a temporary file, fsyncs it and renames it over the
key. boto3 is blocking and runs in worker threads; its failures are retried by
:func:`kalshi.retry.retry` (backoff with jitter), then raised as
:class:`~kalshi.errors.ExportError`.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio

from kalshi.config import S3Config
from kalshi.dedup import metrics
from kalshi.errors import ExportError
from kalshi.retry import retry
from kalshi.s3 import s3_client, s3_errors

__all__ = ["ExportHealth", "LocalTarget", "S3Target", "Target", "open_target"]

T = TypeVar("T")

log = logging.getLogger("kalshi.dedup.export")


class ExportHealth:
    """Whether the export works: ``up`` is ``None`` until an export call answers (unknown
    is neither up nor a failure: the database's state is the same kind), then whether the
    newest one succeeded; ``error`` is the cause of the newest failure while it fails (""
    once a call succeeds again). Every failed attempt (a target call retried or
    given up, a production read of the export) counts in ``kalshi_export_failures_total``;
    the first failure after a success logs one warning with its cause, the first success
    after failures one info line (outside tester F3: a 106 s S3 outage showed only in the
    counter)."""

    def __init__(self, target: str) -> None:
        self.target = target  # where the export goes: "s3://bucket/" or a directory
        self.up: bool | None = None  # unknown until an export call answers
        self.error = ""
        self.failures = 0  # failed attempts since the last success

    def failed(self, cause: str, *, retrying: bool = True) -> None:
        """One failed attempt; ``retrying``: whether it will be tried again (the warning
        says so)."""
        metrics.EXPORT_FAILURES.inc()
        if not self.error:
            then = ", retrying" if retrying else " (not tried again)"
            log.warning("export to %s failing%s: %s", self.target, then, cause)
        self.up = False
        self.error = cause
        self.failures += 1

    def succeeded(self) -> None:
        if self.error:
            log.info(
                "export to %s works again after %d failed attempts", self.target, self.failures
            )
        self.up = True
        self.error = ""
        self.failures = 0

    def document(self) -> dict[str, Any]:
        """The ``export`` component of the dedup ``/health``: ``up`` (``null`` until an
        export call answers), ``error`` (the cause while it fails), ``failures`` (attempts
        since the last success), ``target``."""
        return {
            "up": self.up,
            "error": self.error,
            "failures": self.failures,
            "target": self.target,
        }


class Target(Protocol):
    health: ExportHealth

    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes | None: ...
    async def keys(self, prefix: str) -> list[str]: ...
    async def delete(self, keys: Sequence[str]) -> None: ...
    def describe(self, key: str) -> str: ...


class LocalTarget:
    """Files under ``root``; keys are relative paths."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.health = ExportHealth(str(self.root))

    def describe(self, key: str) -> str:
        return str(self.root / key)

    def _put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".part-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    async def put(self, key: str, data: bytes) -> None:
        try:
            await trio.to_thread.run_sync(self._put, key, data)
        except OSError as exc:
            cause = f"cannot write {self.describe(key)}: {exc}"
            self.health.failed(cause)
            raise ExportError(cause) from exc
        self.health.succeeded()

    async def get(self, key: str) -> bytes | None:
        """The object's bytes; ``None`` when there is none. Raises :class:`ExportError`."""
        try:
            return await trio.to_thread.run_sync((self.root / key).read_bytes)
        except FileNotFoundError:
            return None
        except OSError as exc:
            cause = f"cannot read {self.describe(key)}: {exc}"
            self.health.failed(cause)
            raise ExportError(cause) from exc

    async def keys(self, prefix: str) -> list[str]:
        def walk() -> list[str]:
            base = self.root / prefix
            if not base.is_dir():
                return []
            return sorted(
                p.relative_to(self.root).as_posix()
                for p in base.rglob("*")
                if p.is_file() and not p.name.startswith(".part-")
            )

        return await trio.to_thread.run_sync(walk)

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            (self.root / key).unlink(missing_ok=True)


class S3Target:
    """A bucket; uploads above ``multipart_threshold`` bytes go up in parts."""

    def __init__(
        self,
        s3: S3Config,
        *,
        attempts: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        multipart_threshold: int = 8 * 1024 * 1024,
    ) -> None:
        self.s3 = s3
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.multipart_threshold = multipart_threshold
        self._bucket_checked = False
        self._answered = False  # a request of ours has succeeded on this endpoint
        self.health = ExportHealth(self.describe(""))

    def describe(self, key: str) -> str:
        return f"s3://{self.s3.bucket}/{key}"

    def _s3(self) -> Any:
        return s3_client(self.s3, metrics.EXPORT_FAILURES.inc)

    async def _retry(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` in a thread, ``attempts`` times at most (botocore's own retries inside
        each). Until a request has succeeded on this endpoint, one it refuses or cannot be
        resolved (botocore's ``EndpointConnectionError``: nothing listening, a wrong
        endpoint) is not tried again: :class:`ExportError` at once, after botocore's
        ``S3_ATTEMPTS``, instead of ~54 s of tries (outside tester pbreak8 F9). Once it has
        answered, the same error is an outage and keeps every try."""
        from botocore.exceptions import EndpointConnectionError

        errors = s3_errors()

        def transient(exc: BaseException) -> bool:
            unreachable = isinstance(exc, EndpointConnectionError) and not self._answered
            return isinstance(exc, errors) and not unreachable

        def failed(exc: BaseException, attempt: int) -> None:
            self.health.failed(f"{what}: {exc}")

        try:
            done = await retry(
                lambda: trio.to_thread.run_sync(fn),
                transient=transient,
                attempts=self.attempts,
                initial=self.backoff,
                maximum=self.max_backoff,
                on_failure=failed,
            )
        except errors as exc:
            if not transient(exc):
                self.health.failed(f"{what}: {exc}", retrying=False)
                raise ExportError(
                    f"{what}: {exc} (the endpoint never answered: not tried again)"
                ) from exc
            raise ExportError(f"{what}: {exc} (gave up after {self.attempts} tries)") from exc
        self._answered = True
        self.health.succeeded()
        return done

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        client = self._s3()
        try:
            client.head_bucket(Bucket=self.s3.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            client.create_bucket(Bucket=self.s3.bucket)
        self._bucket_checked = True

    async def put(self, key: str, data: bytes) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=max(self.multipart_threshold, 5 * 1024 * 1024),
            use_threads=False,
        )

        def upload() -> None:
            if not self._bucket_checked:
                self._ensure_bucket()
            self._s3().upload_fileobj(io.BytesIO(data), self.s3.bucket, key, Config=config)

        await self._retry(f"cannot upload {self.describe(key)}", upload)

    async def get(self, key: str) -> bytes | None:
        """The object's bytes; ``None`` when there is none. Raises :class:`ExportError`
        when the bucket keeps failing."""
        from botocore.exceptions import ClientError

        def download() -> bytes | None:
            if not self._bucket_checked:
                self._ensure_bucket()
            try:
                answer = self._s3().get_object(Bucket=self.s3.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    return None
                raise
            return bytes(answer["Body"].read())

        return await self._retry(f"cannot read {self.describe(key)}", download)

    async def keys(self, prefix: str) -> list[str]:
        def listing() -> list[str]:
            if not self._bucket_checked:
                self._ensure_bucket()
            pages = self._s3().get_paginator("list_objects_v2")
            found = []
            for page in pages.paginate(Bucket=self.s3.bucket, Prefix=prefix):
                found += [item["Key"] for item in page.get("Contents", ())]
            return sorted(found)

        return await self._retry(f"cannot list {self.describe(prefix)}", listing)

    async def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[start : start + 1000]]

            def remove(chunk: list[dict[str, str]] = chunk) -> None:
                self._s3().delete_objects(Bucket=self.s3.bucket, Delete={"Objects": chunk})

            await self._retry(f"cannot delete from {self.describe('')}", remove)


def open_target(s3: S3Config, **kwargs: Any) -> Target:
    """The local directory when ``s3.local_dir`` is set, else the bucket."""
    if s3.local_dir:
        return LocalTarget(s3.local_dir)
    return S3Target(s3, **kwargs)
