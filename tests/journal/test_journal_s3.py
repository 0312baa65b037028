"""Upload of closed files to a real S3 server (SeaweedFS) and reading ``s3://`` back."""

from __future__ import annotations

import itertools
from pathlib import Path

import attrs
import pytest
import trio
from journal_support import journal_config
from prometheus_client import REGISTRY

from kalshi.config import S3Config
from kalshi.errors import ExportError, JournalError
from kalshi.journal import JournalProblem, JournalRecord, JournalWriter, read_journal
from kalshi.journal import upload as upload_module
from kalshi.journal.format import encode_frame
from kalshi.testing.s3server import S3Server

_buckets = itertools.count(1)


def s3_config(server: S3Server, bucket: str) -> S3Config:
    return server.config(bucket, prefix="raw/")


async def test_closed_files_are_uploaded_and_read_back(tmp_path: Path, s3_server: S3Server) -> None:
    bucket = f"journal-up-{next(_buckets)}"
    await trio.to_thread.run_sync(s3_server.create_bucket, bucket)
    s3 = s3_config(s3_server, bucket)
    frame = '{"type":"ticker","sid":1,"seq":%d,"msg":{"market_ticker":"T"}}'
    size = len(frame % 10) + 200
    cfg = journal_config(tmp_path, compress=True, upload=True, rotate_bytes=3 * size)
    writer = JournalWriter(cfg, "g-1", s3=s3, flush_interval=0.01)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for n in range(10, 20):
                writer.record_frame(1, n, "in", n, n, frame % n)
            await writer.flush()
            while writer.files_uploaded < len(writer.files_closed):
                await writer.upload_progress()
            nursery.cancel_scope.cancel()
    client = s3_server.client()
    keys = sorted(
        o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="raw/")["Contents"]
    )
    closed = sorted(writer.files_closed[:-1])
    assert keys == [f"raw/journal/{p.relative_to(Path(cfg.dir)).as_posix()}" for p in closed]
    for key, path in zip(keys, closed, strict=True):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == path.read_bytes()
    # the last file was closed on cancellation, after the uploader stopped: upload it too
    last = writer.files_closed[-1]
    await upload_module.upload_with_retry(s3, last, Path(cfg.dir))
    got = await trio.to_thread.run_sync(
        lambda: [
            r.frame_no
            for r in read_journal([f"s3://{bucket}/raw/journal/g-1/"], s3=s3)
            if isinstance(r, JournalRecord)
        ]
    )
    assert got == list(range(10, 20))


async def test_upload_gives_up_with_export_error(tmp_path: Path, s3_server: S3Server) -> None:
    path = tmp_path / "g-1" / "2026-11-24" / "g-1-20261124T225900-1.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{}\n")
    bucket = f"journal-up-{next(_buckets)}"
    await trio.to_thread.run_sync(s3_server.create_bucket, bucket)
    s3 = attrs.evolve(s3_config(s3_server, bucket), secret_key="wrong")
    with trio.fail_after(60), pytest.raises(ExportError) as caught:
        await upload_module.upload_with_retry(s3, path, tmp_path, attempts=2)
    assert f"s3://{bucket}/raw/journal/g-1/2026-11-24/g-1-20261124T225900-1.jsonl" in str(
        caught.value
    )


async def test_a_failing_upload_does_not_stop_the_recording(
    tmp_path: Path, s3_server: S3Server
) -> None:
    bucket = f"journal-up-{next(_buckets)}"
    await trio.to_thread.run_sync(s3_server.create_bucket, bucket)
    s3 = attrs.evolve(s3_config(s3_server, bucket), secret_key="wrong")
    cfg = journal_config(tmp_path, upload=True, rotate_bytes=10)
    writer = JournalWriter(cfg, "g-1", s3=s3, flush_interval=0.01, upload_attempts=2)
    failures = REGISTRY.get_sample_value("kalshi_journal_upload_failures_total") or 0.0
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.record_frame(1, 1, "in", 1, 1, b"{}")
            writer.record_frame(1, 2, "in", 2, 2, b"{}")
            await writer.flush()
            while not writer.upload_gave_up:
                await writer.upload_progress()
            writer.record_frame(1, 3, "in", 3, 3, b"{}")
            nursery.cancel_scope.cancel()
    assert writer.upload_gave_up == writer.files_closed[:1]
    assert writer.files_uploaded == 0
    assert writer.records_written == 3
    after = REGISTRY.get_sample_value("kalshi_journal_upload_failures_total") or 0.0
    assert after - failures == 2


async def test_files_an_earlier_run_could_not_upload_are_uploaded_by_the_next(
    tmp_path: Path, s3_server: S3Server
) -> None:
    # Issue 18 item 9: with a wrong S3 secret 38 of 57 files never reached S3, even after
    # the secret was fixed; no run looked for old files.
    bucket = f"journal-up-{next(_buckets)}"
    await trio.to_thread.run_sync(s3_server.create_bucket, bucket)
    right = s3_config(s3_server, bucket)
    cfg = journal_config(tmp_path, upload=True, rotate_bytes=10)  # one record per file
    wrong = JournalWriter(
        cfg, "g-1", s3=attrs.evolve(right, secret_key="wrong"), flush_interval=0.01,
        upload_attempts=1,
    )  # fmt: skip
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(wrong.run)
            for n in range(1, 8):
                wrong.record_frame(1, n, "in", n, n, b"{}")
            await wrong.flush()
            while len(wrong.upload_gave_up) < 6:
                await wrong.upload_progress()
            assert wrong.upload_backlog == 6
            nursery.cancel_scope.cancel()
    files = sorted(wrong.files_closed)
    assert len(files) == 7  # the seventh closed at shutdown
    assert wrong.files_uploaded == 0

    fixed = JournalWriter(cfg, "g-1", s3=right, flush_interval=0.01)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(fixed.run)
            while fixed.files_uploaded < 7:
                await fixed.upload_progress()
            assert fixed.upload_backlog == 0
            nursery.cancel_scope.cancel()
    root = Path(cfg.dir)
    keys = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"raw/journal/{p.relative_to(root).as_posix()}" for p in files]
    ledger = (root / "g-1" / ".uploaded").read_text().splitlines()
    assert sorted(ledger) == [p.relative_to(root).as_posix() for p in files]


async def test_a_prefix_with_no_journal_is_an_error_and_problems_name_the_key(
    s3_server: S3Server,
) -> None:
    # Outside tester F2: a prefix holding no journal read as nothing (exit 0), and a
    # damaged line was placed in a temporary file (/tmp/kalshi-journal-XXXX/...).
    bucket = f"journal-up-{next(_buckets)}"
    await trio.to_thread.run_sync(s3_server.create_bucket, bucket)
    s3 = s3_config(s3_server, bucket)
    client = s3_server.client()
    good = encode_frame("g-1", 7, 1, "in", 5, 5, b'{"type":"ticker"}')
    objects = {
        "raw/journal/g-1/g-1-20261124T225900-1.jsonl": good + b"not json\n",
        "raw/journal/g-1/.lock": b"",
        "raw/captures/cap.ndjson": b'{"type":"ticker","sid":1,"seq":1,"msg":{}}\n',
    }
    for key, body in objects.items():
        await trio.to_thread.run_sync(
            lambda key=key, body=body: client.put_object(Bucket=bucket, Key=key, Body=body)
        )

    def read(url: str) -> list[JournalRecord | JournalProblem]:
        return list(read_journal([url], s3=s3))

    items = await trio.to_thread.run_sync(read, f"s3://{bucket}/raw/journal/")
    assert [(i.path, i.line_no) for i in items if isinstance(i, JournalProblem)] == [
        (f"s3://{bucket}/raw/journal/g-1/g-1-20261124T225900-1.jsonl", 2)
    ]
    assert [i.frame_no for i in items if isinstance(i, JournalRecord)] == [1]
    for prefix, held in (
        ("raw/captures/", "1 left out (hidden, or not named as journal segments)"),
        ("raw/none/", "nothing"),
    ):
        with pytest.raises(JournalError) as caught:
            await trio.to_thread.run_sync(read, f"s3://{bucket}/{prefix}")
        assert str(caught.value) == (
            f"s3://{bucket}/{prefix}: no journal file to read under this prefix ({held})"
        )
