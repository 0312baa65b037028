"""Upload closed journal files to S3 (boto3 in a worker thread, bounded retry)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import trio

from kalshi.config import S3Config
from kalshi.errors import ExportError
from kalshi.journal import metrics

__all__ = ["object_key", "s3_client", "upload_with_retry"]

MAX_ATTEMPTS = 8
BASE_BACKOFF = 0.5
MAX_BACKOFF = 30.0


def s3_client(s3: S3Config) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint or None,
        aws_access_key_id=s3.access_key or None,
        aws_secret_access_key=s3.secret_key or None,
        region_name=s3.region,
    )


def object_key(s3: S3Config, path: Path, root: Path) -> str:
    """``<prefix>journal/<gatherer_id>/<day>/<file>`` (prefix ``raw/`` by default)."""
    relative = path.relative_to(root).as_posix()
    prefix = s3.prefix if not s3.prefix or s3.prefix.endswith("/") else s3.prefix + "/"
    return f"{prefix}journal/{relative}"


def _upload(s3: S3Config, path: Path, key: str) -> None:
    s3_client(s3).upload_file(str(path), s3.bucket, key)


async def upload_with_retry(
    s3: S3Config, path: Path, root: Path, *, attempts: int = MAX_ATTEMPTS
) -> str:
    """Upload one file to its :func:`object_key`; returns the key.

    Failures are retried with exponential backoff and jitter; after ``attempts`` tries
    raises :class:`~kalshi.errors.ExportError`.
    """
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    key = object_key(s3, path, root)
    delay = BASE_BACKOFF
    for attempt in range(1, attempts + 1):
        try:
            await trio.to_thread.run_sync(_upload, s3, path, key)
        except (Boto3Error, BotoCoreError, ClientError, OSError) as exc:
            metrics.UPLOAD_FAILURES.inc()
            if attempt == attempts:
                raise ExportError(f"cannot upload {path} to s3://{s3.bucket}/{key}: {exc}") from exc
            await trio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, MAX_BACKOFF)
        else:
            metrics.UPLOADS.inc()
            return key
    raise AssertionError("unreachable")
