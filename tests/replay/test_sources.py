"""What `kalshi replay` reads, in the shapes a user brings (outside tester F1, F2, F8, F9):
a directory's every file by content, xz and bzip2, a byte order mark and blank lines in a
capture, captures on S3; a file or object left out is never left out silently."""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
from pathlib import Path

import orjson
import pytest
import trio
from replay_support import kalshi, scripted_session, write_journal

from kalshi.config import S3Config
from kalshi.errors import JournalError
from kalshi.journal import JournalProblem, JournalRecord, read_journal
from kalshi.replay.source import read_records
from kalshi.testing.s3server import S3Server

GOLD = (
    Path(__file__).parents[1]
    / "data"
    / "kalshi-gold15m"
    / "events"
    / "KXGOLD15M-26AUG050800-00"
    / "2026-08-05.ndjson.gz"
)
LINES = 2000  # the gold capture's first lines, real frames


@pytest.fixture(scope="module")
def gold() -> list[bytes]:
    with gzip.open(GOLD) as fh:
        return [fh.readline() for _ in range(LINES)]


def frames(items: object) -> list[bytes]:
    """The frames' bytes, in order."""
    return [
        i.raw  # type: ignore[attr-defined]
        for i in items  # type: ignore[attr-defined]
        if isinstance(i, JournalRecord) and i.kind == "frame"
    ]


def problems(items: object) -> list[tuple[str, int, str]]:
    return [
        (p.path, p.line_no, p.reason)
        for p in items  # type: ignore[attr-defined]
        if isinstance(p, JournalProblem)
    ]


def summary(result: subprocess.CompletedProcess[str]) -> str:
    return next(line for line in result.stderr.splitlines() if line.startswith("replayed "))


def test_a_directory_reads_every_file_by_content_whatever_its_name(
    tmp_path: Path, gold: list[bytes]
) -> None:
    """F1: `part1.json` + `part2.log` gave 0 frames, a part named `x02.NDJSON` or
    `b.jsonl.bz2` was skipped, each with exit 0."""
    expected = frames(read_records([_write(tmp_path / "whole.ndjson", b"".join(gold))]))
    assert len(expected) == LINES
    d1 = tmp_path / "d1"
    d1.mkdir()
    (d1 / "part1.json").write_bytes(b"".join(gold[:1000]))
    (d1 / "part2.log").write_bytes(b"".join(gold[1000:]))
    d3 = tmp_path / "d3"
    d3.mkdir()
    (d3 / "x00.ndjson").write_bytes(b"".join(gold[:700]))
    (d3 / "x01.ndjson").write_bytes(b"".join(gold[700:1400]))
    (d3 / "x02.NDJSON").write_bytes(b"".join(gold[1400:]))
    d2 = tmp_path / "d2"
    d2.mkdir()
    (d2 / "a.jsonl.gz").write_bytes(gzip.compress(b"".join(gold[:1000])))
    (d2 / "b.jsonl.bz2").write_bytes(bz2.compress(b"".join(gold[1000:])))
    (d2 / ".lock").write_bytes(b"")  # hidden: left out by rule (the journal's own lock)
    (d2 / ".cache").mkdir()
    (d2 / ".cache" / "c.jsonl").write_bytes(b"not a frame\n")
    for folder in (d1, d2, d3):
        items = list(read_records([folder]))
        assert problems(items) == []
        assert frames(items) == expected
        result = kalshi("replay", str(folder), "--format", "jsonl", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert summary(result).startswith(f"replayed {LINES:,} frames ")


def test_a_directory_with_nothing_to_read_is_an_error_naming_it(tmp_path: Path) -> None:
    """F1: an empty result from a non-empty directory is never exit 0."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".lock").write_bytes(b"")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(JournalError) as caught:
        list(read_records([hidden]))
    assert (
        str(caught.value)
        == f"{hidden}: no file to read in this directory (1 hidden file(s) left out)"
    )
    with pytest.raises(JournalError) as caught:
        list(read_records([empty]))
    assert str(caught.value) == f"{empty}: no file to read in this directory (empty)"
    result = kalshi("replay", str(hidden), "--format", "jsonl", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert (
        f"{hidden}: no file to read in this directory (1 hidden file(s) left out)" in result.stderr
    )


def test_a_file_that_is_no_json_lines_is_named_and_refused_whole(
    tmp_path: Path, gold: list[bytes]
) -> None:
    """A directory's file of another kind (a README, a binary file) is read by content,
    named with why it gives nothing, and the exit code is 1: never a silent skip."""
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "cap.jsonl").write_bytes(b"".join(gold[:50]))
    readme = folder / "README.md"
    readme.write_bytes(b"".join(b"line %d of prose\n" % n for n in range(1, 31)))
    blob = folder / "data.bin"
    blob.write_bytes(b"PAR1\x00\x01\x02\nmore\x00\n")
    items = list(read_records([folder]))
    assert frames(items) == frames(read_records([folder / "cap.jsonl"]))
    assert len(frames(items)) == 50
    got = problems(items)
    with pytest.raises(orjson.JSONDecodeError) as prose:
        orjson.loads(b"line 1 of prose")
    invalid = f"invalid JSON: {prose.value}"
    assert got == [(str(readme), n, invalid) for n in range(1, 10)] + [
        (
            str(readme),
            10,
            f"not a capture: not JSON lines: 10 lines read, none of them JSON (the last: "
            f"{invalid}); 21 line(s) of the file not read",
        ),
        (
            str(blob),
            1,
            "not a capture: binary content (a NUL byte), not JSON lines: not a journal or"
            " capture, or compressed in a way not read here (gzip, zstd, xz and bzip2 are);"
            " 2 line(s) of the file not read",
        ),
    ]
    result = kalshi("replay", str(folder), "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 1
    assert "32 line(s) not read (damaged, or of a file refused whole)" in result.stderr


def test_xz_and_bzip2_are_read_as_gzip_is(tmp_path: Path, gold: list[bytes]) -> None:
    """F8: `.xz`/`.bz2` given by name were read as text (~118 `invalid JSON` lines and
    the journal's torn-file wording)."""
    data = b"".join(gold)
    plain = list(read_records([_write(tmp_path / "cap.ndjson", data)]))
    for name, packed in (
        ("cap.ndjson.xz", lzma.compress(data)),
        ("cap.ndjson.bz2", bz2.compress(data)),
        ("two-streams.bz2", bz2.compress(data[:5000]) + bz2.compress(data[5000:])),
    ):
        items = list(read_records([_write(tmp_path / name, packed)]))
        assert problems(items) == []
        assert frames(items) == frames(plain)
    torn = _write(tmp_path / "torn.xz", lzma.compress(data)[:-40])
    result = kalshi("replay", str(torn), "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 1
    assert f"{torn}:{LINES + 1}: torn xz tail (incomplete last stream)" in result.stderr
    assert result.stderr.splitlines()[-1] == "1 file(s) end torn, read up to the cut"


def test_a_byte_order_mark_and_blank_lines_in_a_capture_are_no_damage(
    tmp_path: Path, gold: list[bytes]
) -> None:
    """F9: a leading UTF-8 BOM rejected line 1 and each blank line was damage (exit 1)."""
    data = b"".join(gold)
    plain = list(read_records([_write(tmp_path / "cap.ndjson", data)]))
    shaped = b"\xef\xbb\xbf\n" + b"".join(gold[:1000]) + b"\n\r\n" + b"".join(gold[1000:])
    path = _write(tmp_path / "bom.ndjson", shaped)
    items = list(read_records([path]))
    assert problems(items) == []
    assert frames(items) == frames(plain)
    result = kalshi("replay", str(path), "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary(result).startswith(f"replayed {LINES:,} frames ")
    assert f"{path}: 3 blank line(s) skipped (a capture: no frame, no damage)" in result.stderr
    bom_only = _write(tmp_path / "bom2.ndjson", b"\xef\xbb\xbf" + data)
    assert frames(read_records([bom_only])) == frames(plain)


async def test_a_blank_line_in_our_journal_stays_damage(tmp_path: Path) -> None:
    """Our journal keeps its integrity rule (docs/journal.md): a blank line is damage,
    before its first line too."""
    (path,) = await write_journal(tmp_path / "journal", scripted_session())
    lines = path.read_bytes().split(b"\n")
    blank = _write(tmp_path / "blank.jsonl", b"\n" + b"\n".join([*lines[:3], b"", *lines[3:]]))
    assert problems(read_records([blank])) == [
        (str(blank), 1, "empty line"),
        (str(blank), 5, "empty line"),
    ]
    assert problems(read_records([blank])) == problems(read_journal([blank]))


async def test_captures_on_s3_are_read_as_local_ones(
    tmp_path: Path, s3_server: S3Server, gold: list[bytes]
) -> None:
    """F2: captures under an S3 prefix gave `replayed 0 frames`, exit 0, as did a prefix
    holding nothing; a problem named a temporary file, not the key."""
    bucket = "replay-sources"
    await trio.to_thread.run_sync(s3_server.create_bucket, bucket)
    client = s3_server.client()
    damaged = list(gold[:1000])
    damaged[9] = b'{"type": "orderbook_delta", torn\n'
    objects = {
        "captures/gold/part1.ndjson": b"".join(damaged),
        "captures/gold/part2.jsonl.gz": gzip.compress(b"".join(gold[1000:])),
        "captures/gold/.hidden": b"left out",
    }
    for key, body in objects.items():
        await trio.to_thread.run_sync(
            lambda key=key, body=body: client.put_object(Bucket=bucket, Key=key, Body=body)
        )
    local = tmp_path / "local"
    local.mkdir()
    (local / "part1.ndjson").write_bytes(objects["captures/gold/part1.ndjson"])
    (local / "part2.jsonl.gz").write_bytes(objects["captures/gold/part2.jsonl.gz"])
    s3 = S3Config(
        enabled=True,
        endpoint=s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        region=s3_server.region,
    )
    url = f"s3://{bucket}/captures/gold"
    items = await trio.to_thread.run_sync(lambda: list(read_records([url], s3=s3)))
    here = list(read_records([local]))
    assert frames(items) == frames(here)
    assert len(frames(items)) == LINES - 1
    key = f"{url}/part1.ndjson"
    assert problems(items) == [(key, 10, problems(here)[0][2])]
    (tmp_path / "s3.yaml").write_text(
        "s3_export:\n"
        "  enabled: true\n"
        f"  endpoint: {s3_server.endpoint}\n"
        f"  access_key: {s3_server.access_key}\n"
        f"  secret_key: {s3_server.secret_key}\n"
        f"  region: {s3_server.region}\n"
    )
    result = await trio.to_thread.run_sync(
        lambda: kalshi("replay", url, "--config", "s3.yaml", "--format", "jsonl", cwd=tmp_path)
    )
    assert result.returncode == 1
    assert summary(result).startswith(f"replayed {LINES - 1:,} frames ")
    assert f"{key}:10: invalid JSON" in result.stderr
    assert "kalshi-" not in result.stderr  # no temporary path
    for prefix, held in (
        (f"s3://{bucket}/nothing/here", "nothing"),
        (f"s3://{bucket}/captures/gold/.h", "1 left out (hidden)"),
    ):
        result = await trio.to_thread.run_sync(
            lambda prefix=prefix: kalshi(
                "replay", prefix, "--config", "s3.yaml", "--format", "jsonl", cwd=tmp_path
            )
        )
        assert (result.returncode, result.stdout) == (1, "")
        assert f"{prefix}: no object to read under this prefix ({held})" in result.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
