"""Damaged journals: torn last line, torn zstd tail, corrupt lines in the middle."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import zstandard
from journal_support import journal_config

from kalshi.errors import JournalError
from kalshi.journal import JournalProblem, JournalRecord, JournalWriter, read_journal
from kalshi.journal.format import _sealed, encode_frame
from kalshi.journal.reader import split_lines, zstd_chunks

FRAME = '{"type":"trade","sid":1,"seq":%d,"msg":{"market_ticker":"T","yes_price_dollars":"0.42"}}'


def line(n: int) -> bytes:
    return encode_frame("g-1", 1, n, "in", n, n, FRAME % n)


def split(items: list[JournalRecord | JournalProblem]) -> tuple[list[int], list[JournalProblem]]:
    return (
        [i.frame_no for i in items if isinstance(i, JournalRecord)],
        [i for i in items if isinstance(i, JournalProblem)],
    )


def test_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "g-1-20261124T225900-1.jsonl"
    path.write_bytes(b"".join(line(n) for n in range(1, 6)) + line(6)[:-30])
    frames, problems = split(list(read_journal([path])))
    assert frames == [1, 2, 3, 4, 5]
    torn = len(line(6)) - 30
    assert problems == [JournalProblem(str(path), 6, f"torn last line ({torn} bytes, no newline)")]


def test_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(line(1) + line(2)[:-1])
    assert split(list(read_journal([path]))) == ([1, 2], [])


def test_corrupt_lines_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    lines = [line(n) for n in range(1, 9)]
    lines[1] = b"\x00\xff\xfegarbage bytes\n"
    lines[3] = b'{"gatherer_id":"g-1","conn_id":1,"frame_no":4,"direction":"in","mono_us":4}\n'
    lines[4] = b"\n"
    lines[5] = b'{"gatherer_id":"g-1","conn_id":1,"frame_no":6,"direction":"in","wall_us":6,'
    lines[5] += b'"mono_us":6,"kind":"frame","b64":"***"}\n'
    path.write_bytes(b"".join(lines))
    frames, problems = split(list(read_journal([path])))
    assert frames == [1, 3, 7, 8]
    assert [(p.path, p.line_no) for p in problems] == [(str(path), n) for n in (2, 4, 5, 6)]
    assert problems[0].reason.startswith("invalid JSON")
    assert problems[1].reason == "wall_us: expected an integer, got None"
    assert problems[2].reason == "empty line"
    assert problems[3].reason.startswith("b64:")


async def _write_compressed(tmp_path: Path, batches: int, per_batch: int) -> Path:
    writer = JournalWriter(journal_config(tmp_path, compress=True), "g-1", flush_interval=3600)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            n = 0
            for _ in range(batches):
                for _ in range(per_batch):
                    n += 1
                    writer.record_frame(1, n, "in", n, n, FRAME % n)
                await writer.flush()  # one complete zstd frame per flush
            nursery.cancel_scope.cancel()
    (path,) = writer.files_closed
    return path


async def test_torn_zstd_tail(tmp_path: Path) -> None:
    path = await _write_compressed(tmp_path, batches=4, per_batch=25)
    data = path.read_bytes()
    # find where the last zstd frame starts
    dctx = zstandard.ZstdDecompressor()
    offset = 0
    starts = []
    while offset < len(data):
        starts.append(offset)
        obj = dctx.decompressobj()
        obj.decompress(data[offset:])
        offset = len(data) - len(obj.unused_data)
    assert len(starts) == 4
    path.write_bytes(data[: starts[3] + 12])
    frames, problems = split(list(read_journal([path])))
    assert frames == list(range(1, 76))
    assert problems == [JournalProblem(str(path), 76, "torn zstd tail (incomplete last frame)")]


async def test_torn_zstd_tail_inside_the_only_frame(tmp_path: Path) -> None:
    path = await _write_compressed(tmp_path, batches=1, per_batch=10)
    data = path.read_bytes()
    path.write_bytes(data[:-4])  # the frame's checksum is missing
    frames, problems = split(list(read_journal([path])))
    # the content was complete (every line verifies its own checksum); the tail is reported
    assert frames == list(range(1, 11))
    assert problems == [JournalProblem(str(path), 11, "torn zstd tail (incomplete last frame)")]


async def test_garbage_after_zstd_frames(tmp_path: Path) -> None:
    path = await _write_compressed(tmp_path, batches=2, per_batch=5)
    path.write_bytes(path.read_bytes() + b"this is not zstd at all")
    frames, problems = split(list(read_journal([path])))
    assert frames == list(range(1, 11))
    assert len(problems) == 1
    assert problems[0].line_no == 11
    assert problems[0].reason.startswith("corrupt zstd frame at byte ")


async def test_every_flipped_byte_of_a_zstd_journal_costs_its_frame_at_most(
    tmp_path: Path,
) -> None:
    # Issue 18 item 5: one flipped byte lost the rest of the file (up to 2 703 of 3 009
    # records) and 12-23 of 40 flips passed silently. 20 frames of 25 records; flip one
    # byte at 40 places spread over the file: each read loses at most the damaged frame,
    # says where, and never yields a record that was not written.
    path = await _write_compressed(tmp_path, batches=20, per_batch=25)
    data = path.read_bytes()
    written = {n: line(n) for n in range(1, 501)}
    lost_most = 0
    for k in range(40):
        at = 5 + (len(data) - 10) * k // 40
        damaged = bytearray(data)
        damaged[at] ^= 0x10
        path.write_bytes(bytes(damaged))
        items = list(read_journal([path]))
        records = [i for i in items if isinstance(i, JournalRecord)]
        problems = [i for i in items if isinstance(i, JournalProblem)]
        for record in records:  # nothing silently different
            n = record.frame_no
            assert encode_frame("g-1", 1, n, "in", n, n, record.raw.decode()) == written[n]
        assert len({r.frame_no for r in records}) == len(records)
        lost = 500 - len(records)
        lost_most = max(lost_most, lost)
        assert lost <= 25, (at, lost)
        assert lost == 0 or problems, at
        assert all(p.path == str(path) for p in problems)
    assert lost_most == 25


def test_a_flipped_byte_in_a_plain_journal_costs_its_line(tmp_path: Path) -> None:
    path = tmp_path / "g-1-20261124T225900-1.jsonl"
    lines = [line(n) for n in range(1, 11)]
    at = len(b"".join(lines[:4])) + lines[4].index(b"seq") + 6
    data = bytearray(b"".join(lines))
    data[at] ^= 0x01  # "seq":5 -> "seq":4: valid JSON, a frame never received
    path.write_bytes(bytes(data))
    frames, problems = split(list(read_journal([path])))
    assert frames == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert problems == [JournalProblem(str(path), 5, "checksum mismatch (a damaged line)")]


def test_directories_read_in_time_order_and_missing_paths(tmp_path: Path) -> None:
    day = tmp_path / "g-1" / "2026-11-24"
    day.mkdir(parents=True)
    (day / "g-1-20261124T230000-10.jsonl").write_bytes(line(3))
    (day / "g-1-20261124T230000-2.jsonl").write_bytes(line(2))
    (day / "g-1-20261124T225900-1.jsonl").write_bytes(line(1))
    (day / "notes.txt").write_bytes(b"ignored")
    assert split(list(read_journal([tmp_path]))) == ([1, 2, 3], [])
    with pytest.raises(JournalError, match="no such journal"):
        list(read_journal([tmp_path / "missing"]))


def _flip_seq(raw: bytes, n: int) -> bytes:
    """``raw`` (lines) with frame ``n``'s ``seq`` changed but its CRC kept: valid JSON,
    a frame never received, found only by the line's own checksum."""
    return raw.replace(b'\\"seq\\":%d,' % n, b'\\"seq\\":%d,' % (n + 100), 1)


async def test_zstd_frames_with_their_checksum_are_read_whole_and_verified(
    tmp_path: Path,
) -> None:
    # The writer's frames carry zstd's content checksum: each comes out whole, verified
    # (its lines' own CRCs are not computed again); the lines are the ones written.
    path = await _write_compressed(tmp_path, batches=3, per_batch=4)
    chunks = list(zstd_chunks(path.read_bytes(), torn := []))
    assert torn == []
    assert [(c.count(b"\n"), verified) for c, verified in chunks] == [(4, True)] * 3
    assert b"".join(c for c, _ in chunks) == b"".join(line(n) for n in range(1, 13))
    assert split(list(read_journal([path]))) == (list(range(1, 13)), [])


@pytest.mark.parametrize("checksum", [False, True])
def test_a_line_damaged_before_compression_costs_its_line_unless_zstd_vouches(
    tmp_path: Path, checksum: bool
) -> None:
    # Without zstd's checksum every line's CRC is checked. With it, a frame whose
    # checksum matches holds the bytes its writer compressed: a line already wrong then
    # (not something our writer makes) is taken as written.
    path = tmp_path / "g-1-20261124T225900-1.jsonl.zst"
    raw = _flip_seq(b"".join(line(n) for n in range(1, 6)), 3)
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=checksum).compress(raw))
    frames, problems = split(list(read_journal([path])))
    if checksum:
        assert (frames, problems) == ([1, 2, 3, 4, 5], [])
    else:
        assert frames == [1, 2, 4, 5]
        assert problems == [JournalProblem(str(path), 3, "checksum mismatch (a damaged line)")]


def test_split_lines_verifies_only_lines_whole_in_a_verified_chunk() -> None:
    chunks = [(b"a\nb\nc", True), (b"c\nd\n", True), None, (b"e\n", False), (b"f", True)]
    assert list(split_lines(iter(chunks))) == [
        (b"a", True, True),
        (b"b", True, True),
        (b"cc", True, False),  # ran across two chunks
        (b"d", True, False),
        (b"e", True, False),
        (b"f", False, False),
    ]


def test_a_frame_line_whose_direction_is_no_string_is_a_problem(tmp_path: Path) -> None:
    # Found by the line decoders' property test: a list there raised TypeError (unhashable)
    # out of decode_line, and read_journal with it.
    path = tmp_path / "a.jsonl"
    body = line(2)[: -len(',"crc":"00000000"}\n')] + b"}"  # resealed below: a good CRC
    bad = _sealed(body.replace(b'"direction":"in"', b'"direction":["in"]'))
    path.write_bytes(line(1) + bad + line(3))
    frames, problems = split(list(read_journal([path])))
    assert frames == [1, 3]
    assert [(p.line_no, p.reason) for p in problems] == [
        (2, "direction: expected 'in' or 'out', got ['in']")
    ]


async def test_kalshi_replay_reads_every_damaged_journal_as_read_journal(tmp_path: Path) -> None:
    # `kalshi replay` reads through read_records (which also reads captures); past a
    # journal's first line it decodes as read_journal does, a list at a time: the same
    # records, problems and line numbers for every damage above, and for markers between
    # frames (a slice holding one is read line by line).
    from kalshi.journal.format import encode_marker
    from kalshi.replay.source import read_records

    def same(path: Path) -> int:
        items = list(read_records([path]))
        assert items == list(read_journal([path]))
        return sum(isinstance(i, JournalProblem) for i in items)

    path = await _write_compressed(tmp_path / "z", batches=20, per_batch=25)
    data = path.read_bytes()
    damaged_reads = 0
    for k in range(40):
        at = 5 + (len(data) - 10) * k // 40
        damaged = bytearray(data)
        damaged[at] ^= 0x10
        path.write_bytes(bytes(damaged))
        damaged_reads += same(path) > 0
    assert damaged_reads >= 30  # most flips cost a frame: the problems were compared
    for cut in (data[:-4], data[: len(data) // 2], data + b"this is not zstd at all"):
        path.write_bytes(cut)
        assert same(path) == 1
    plain = tmp_path / "g-1-20261124T225900-1.jsonl"
    lines = [line(n) for n in range(1, 3000)]
    lines[1] = b"\x00\xff\xfegarbage bytes\n"
    lines[4] = b"\n"
    lines[1500] = encode_marker("g-1", 1, 1500, "connect", 0, 0, {"label": "trades"})
    flipped = bytearray(lines[2000])
    flipped[flipped.index(b"seq") + 6] ^= 0x01
    lines[2000] = bytes(flipped)
    plain.write_bytes(b"".join(lines) + line(3000)[:-30])
    assert same(plain) == 4
    records = [i for i in read_records([plain]) if isinstance(i, JournalRecord)]
    assert {r.label for r in records[-10:]} == {"trades"}
    whole = tmp_path / "g-1-20261124T225900-2.jsonl.zst"  # one verified frame, a marker in it
    whole.write_bytes(
        zstandard.ZstdCompressor(write_checksum=True).compress(
            b"".join(lines[1400:2000] + lines[2001:])
        )
    )
    assert same(whole) == 0
    records = [i for i in read_records([whole]) if isinstance(i, JournalRecord)]
    assert len(records) == 1598  # the connect marker is a record
    assert records[100].kind == "connect"
    assert records[99].label == "" and records[101].label == "trades"
