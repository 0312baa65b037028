"""Upload closed journal files to S3 (boto3 in a worker thread, bounded retry)."""

from __future__ import annotations

from pathlib import Path

import trio

from kalshi.config import S3Config
from kalshi.errors import ExportError
from kalshi.journal import metrics
from kalshi.retry import retry
from kalshi.s3 import s3_client, s3_errors

__all__ = ["object_key", "upload_with_retry"]

MAX_ATTEMPTS = 8
BASE_BACKOFF = 0.5
MAX_BACKOFF = 30.0


def object_key(s3: S3Config, path: Path, root: Path) -> str:
    """``<prefix>journal/<gatherer_id>/<day>/<file>`` (prefix ``raw/`` by default)."""
    relative = path.relative_to(root).as_posix()
    prefix = s3.prefix if not s3.prefix or s3.prefix.endswith("/") else s3.prefix + "/"
    return f"{prefix}journal/{relative}"


def _upload(s3: S3Config, path: Path, key: str) -> None:
    s3_client(s3, metrics.UPLOAD_FAILURES.inc).upload_file(str(path), s3.bucket, key)


async def upload_with_retry(
    s3: S3Config, path: Path, root: Path, *, attempts: int = MAX_ATTEMPTS
) -> str:
    """Upload one file to its :func:`object_key`; returns the key.

    Failures are retried by :func:`kalshi.retry.retry` (backoff with jitter, each failed
    try counted in ``kalshi_journal_upload_failures``); after ``attempts`` tries raises
    :class:`~kalshi.errors.ExportError`.
    """
    key = object_key(s3, path, root)

    def failed(exc: BaseException, attempt: int) -> None:
        metrics.UPLOAD_FAILURES.inc()

    try:
        await retry(
            lambda: trio.to_thread.run_sync(_upload, s3, path, key),
            transient=s3_errors(),
            attempts=attempts,
            initial=BASE_BACKOFF,
            maximum=MAX_BACKOFF,
            on_failure=failed,
        )
    except s3_errors() as exc:
        raise ExportError(f"cannot upload {path} to s3://{s3.bucket}/{key}: {exc}") from exc
    metrics.UPLOADS.inc()
    return key
