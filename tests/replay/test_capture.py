"""Captures (third-party JSON lines of Kalshi frames) read as journals: shapes, times,
compression, sessions where seq restarts, and the sequence rule."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from pathlib import Path

import msgspec
import orjson
import pytest
import zstandard
from replay_support import (
    BASE_US,
    OB_CONN,
    T1,
    T2,
    delta,
    frame,
    kalshi,
    scripted_session,
    snapshot,
    subscribed,
    trade,
    write_journal,
)

from kalshi.journal import JournalProblem, JournalRecord
from kalshi.journal.format import encode_frame
from kalshi.replay import Replayer, book_from_journal
from kalshi.replay.capture import CaptureFormat, decode_capture_line, detect, to_us
from kalshi.replay.core import BAD_FRAMES_LISTED
from kalshi.replay.source import CAPTURE_GATHERER, STOP_GRACE_US, SourceOptions, read_records

RECV = 1_795_561_140_000  # ms


def wrapped(recv_ms: int, raw: bytes) -> bytes:
    return b'{"recv_ms":%d,"event":%s}' % (recv_ms, raw)


def write_raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def sourceless(items: Iterable[JournalRecord | JournalProblem]) -> list[object]:
    """The items with the file name left out of the connect markers and the frames."""
    return [
        msgspec.structs.replace(
            i, detail={k: v for k, v in i.detail.items() if k != "url"}, source=""
        )
        if isinstance(i, JournalRecord)
        else i
        for i in items
    ]


def conn_of(line: bytes, field: bytes = b'"event":', time: str = "recv_ms") -> int:
    """The ``conn_id`` of a capture connection whose first frame is ``line``'s: its
    receive time in µs plus the CRC-32 of the frame's bytes mod 10^6 (docs/replay.md,
    "Identity of a capture's rows")."""
    raw = line[line.index(field) + len(field) : -1]
    return orjson.loads(line)[time] * 1000 + zlib.crc32(raw) % 1_000_000


def frames_of(items: Iterable[object]) -> list[JournalRecord]:
    return [i for i in items if isinstance(i, JournalRecord) and i.kind == "frame"]


def test_shapes_are_detected_and_named_fields_win() -> None:
    assert detect({"recv_ms": 1, "event": {"type": "trade"}}) == CaptureFormat(
        "event", "recv_ms", "ms"
    )
    assert detect({"type": "trade", "sid": 1, "msg": {}}) == CaptureFormat(None, None, None)
    assert detect({"ts": 1.5, "frame": '{"type":"trade"}'}) == CaptureFormat("frame", "ts", None)
    assert detect({"when": "2026-08-05T03:45:40Z", "body": {"type": "x"}}) == CaptureFormat(
        "body", "when", None
    )
    with pytest.raises(ValueError, match="--frame-field"):
        detect({"a": {"type": "x"}, "b": {"type": "y"}})
    with pytest.raises(ValueError, match="--time-field"):
        detect({"a": 1, "b": 2, "body": {"type": "x"}})
    named = CaptureFormat("b", "a", "us")
    assert detect({"a": 1, "b": {"type": "y"}, "c": 2}, named) == named


def test_times_become_exact_microseconds() -> None:
    assert to_us(1785901540025, "ms", "t") == 1785901540025000
    assert to_us(1785901540025, None, "t") == 1785901540025000  # by size: ms
    assert to_us(1785901540, None, "t") == 1785901540000000
    assert to_us(1785901540.025123, None, "t") == 1785901540025123  # exact from the decimal
    assert to_us(1785901540025123456, None, "t") == 1785901540025123
    assert to_us("2026-08-05T03:45:40.722003Z", None, "t") == 1785901540722003
    with pytest.raises(ValueError, match="t: "):
        to_us("yesterday", None, "t")


def test_one_rule_for_receive_times_finer_than_a_microsecond() -> None:
    """Receive times are our clock's, kept in µs: a finer part is truncated toward the past,
    whether ns integers or RFC 3339 fractions of 7 to 9 digits; a number written as a
    JSON string reads as that number."""
    ns = 1785901540025456789
    assert to_us(ns, "ns", "t") == to_us(ns, None, "t") == 1785901540025456
    for text in (
        "2026-08-05T03:45:40.025456789Z",
        "2026-08-05T03:45:40.02545678Z",
        "2026-08-05T03:45:40.0254567Z",
        "2026-08-05T05:45:40.025456999+02:00",
    ):
        assert to_us(text, None, "t") == 1785901540025456, text
    assert to_us(str(ns), "ns", "t") == 1785901540025456
    assert to_us("1785901540025", None, "recv_ms") == to_us(1785901540025, None, "t")
    assert to_us("1785901540.025123", None, "t") == 1785901540025123
    assert detect({"recv_ms": "1785901540025", "event": {"type": "trade"}}) == CaptureFormat(
        "event", "recv_ms", "ms"
    )
    assert detect({"ts": "2026-08-05T03:45:40.025456789Z", "data": {"type": "x"}}) == (
        CaptureFormat("data", "ts", None)
    )


def test_the_frame_bytes_are_sliced_not_reencoded() -> None:
    frame = b'{ "type" : "trade", "sid":2,"seq":9, "msg": {"s": "}\\"{", "u": "\\u00e9"} }'
    line = b'{"note": "\\"event\\":{", "event" : ' + frame + b' , "recv_us": 7}'
    fmt = detect(orjson.loads(line))
    decoded, parsed = decode_capture_line(line, fmt)
    assert (decoded.raw, decoded.recv_us) == (frame, 7)
    assert parsed == orjson.loads(frame)
    first = b'{"event":' + frame + b',\n "recv_us": 8}'
    decoded, _ = decode_capture_line(first, detect(orjson.loads(first)))
    assert (decoded.raw, decoded.recv_us) == (frame, 8)
    spaced = b'{"recv_us": 9, "event":\t' + frame + b"  }  "
    decoded, _ = decode_capture_line(spaced, detect(orjson.loads(spaced)))
    assert (decoded.raw, decoded.recv_us) == (frame, 9)
    as_text = orjson.dumps({"t": 5, "raw": frame.decode()})
    decoded, _ = decode_capture_line(as_text, detect(orjson.loads(as_text)))
    assert (decoded.raw, decoded.recv_us) == (frame, 5_000_000)


def _capture() -> list[bytes]:
    return [
        wrapped(RECV, snapshot(1, 10, T1, yes=[("0.4000", "10.00")])),
        wrapped(RECV + 1, delta(1, 11, T1, "0.4000", "-2.00")),
        wrapped(RECV + 2, trade(2, 5, T1, "tr-1", "0.4000", "2.00")),
        wrapped(RECV + 3, delta(1, 14, T1, "0.4100", "1.00")),  # 12, 13: other markets
        wrapped(RECV + 4, delta(1, 16, T1, "0.4000", "1.00")),
    ]


def test_plain_gzip_zstd_and_stdin_give_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _capture()
    plain = write(tmp_path / "c.ndjson", lines)
    data = plain.read_bytes()
    (tmp_path / "c.ndjson.gz").write_bytes(gzip.compress(data))
    (tmp_path / "c.ndjson.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    got = [sourceless(read_records([tmp_path / n])) for n in ("c.ndjson.gz", "c.ndjson.zst")]
    expected = sourceless(read_records([plain]))
    assert got == [expected, expected]

    class Stdin:
        buffer = __import__("io").BytesIO(gzip.compress(data))

    monkeypatch.setattr("sys.stdin", Stdin)
    assert sourceless(read_records(["-"])) == expected
    connect = expected[0]
    assert isinstance(connect, JournalRecord)
    assert (connect.kind, connect.gatherer_id, connect.conn_id) == (
        "connect",
        CAPTURE_GATHERER,
        conn_of(lines[0]),
    )
    # Two skips in three steps: too few steps to take a skip for a loss (issue F10b).
    assert connect.detail["seq_check"] == "filtered"
    assert connect.detail["seq_check_reason"] == (
        "auto: 2 of 3 seq steps in the first 5 frames skip numbers"
        " (too few steps to take a skip for a loss)"
    )
    assert connect.detail["time"] == "frame in 'event'; received_at from 'recv_ms' (ms)"
    assert [(f.conn_id, f.frame_no, f.wall_us, f.raw) for f in frames_of(expected)] == [
        (conn_of(lines[0]), n, (RECV + n - 1) * 1000, _event(line))
        for n, line in enumerate(lines, 1)
    ]


def _event(line: bytes) -> bytes:
    return line[line.index(b'"event":') + 8 : -1]


def test_a_filtered_capture_builds_books_and_contiguous_reads_gaps(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", _capture())
    filtered = Replayer(seq_check="filtered")
    rows = [r for item in read_records([path]) for r in filtered.feed(item)]
    assert [t for t, _ in rows] == [
        "orderbook_snapshots",
        "orderbook_deltas",
        "trades",
        "orderbook_deltas",
        "orderbook_deltas",
    ]
    book = filtered.processor(CAPTURE_GATHERER).books[T1]
    assert (book.yes, book.no) == ({40000: 900, 41000: 100}, {})
    assert T1 not in filtered.processor(CAPTURE_GATHERER).stale
    view = filtered.continuity.markets[T1]
    assert (view.snapshots, view.deltas, view.trades, view.after_skip, view.gaps) == (
        1,
        3,
        1,
        2,
        0,
    )
    assert view.verdict(None) == (
        "filtered: completeness not provable (2 frame(s) after a skipped seq); book consistent"
    )

    strict = SourceOptions(seq_check="contiguous")
    at = book_from_journal(read_records([path], strict), T1, None, "contiguous")
    assert (at.stale, at.detail) == (True, "sequence gap: sid 1 seq 12-13 missing")
    contiguous = Replayer(seq_check="contiguous")
    tables = [t for item in read_records([path], strict) for t, _ in contiguous.feed(item)]
    assert tables.count("gaps") == 2


def test_a_seq_restart_starts_a_new_session(tmp_path: Path) -> None:
    lines = [
        wrapped(RECV, snapshot(1, 500, T1, yes=[("0.4000", "10.00")])),
        wrapped(RECV + 1, delta(1, 501, T1, "0.4000", "-2.00")),
        # The recorder reconnected: sid and seq start again.
        wrapped(RECV + 9, snapshot(1, 1, T2, no=[("0.3000", "1.00")])),
        wrapped(RECV + 10, delta(1, 2, T2, "0.3000", "1.00", side="no")),
    ]
    path = write(tmp_path / "c.jsonl", lines)
    items = list(read_records([path]))
    one, two = conn_of(lines[0]), conn_of(lines[2])
    assert [
        (i.kind, i.conn_id, i.frame_no, i.detail.get("reason"))
        for i in items
        if isinstance(i, JournalRecord)
    ] == [
        ("connect", one, 0, None),
        ("frame", one, 1, None),
        ("frame", one, 2, None),
        ("disconnect", one, 3, "seq restart: sid 1 seq 1 after 501"),
        ("connect", two, 0, None),
        ("frame", two, 1, None),
        ("frame", two, 2, None),
    ]
    at = book_from_journal(iter(items), T1)
    assert (at.stale, at.detail) == (True, f"disconnect: connection {one} ended")
    assert book_from_journal(iter(items), T2).stale is False


def test_a_session_goes_on_across_files_each_file_its_own_identity(tmp_path: Path) -> None:
    """seq going on from one file to the next is one session (books and seq go on, one
    session line), but each file's frames are their own connection (conn_id from the
    file's first frame, frame_no from 1): each part read alone, the parts in either
    order, or twice, give every frame the same identity (docs/replay.md, "Identity of a
    capture's rows")."""
    first = [
        wrapped(RECV, snapshot(1, 500, T1, yes=[("0.4000", "10.00")])),
        wrapped(RECV + 1, delta(1, 501, T1, "0.4000", "-2.00")),
    ]
    second = [
        wrapped(RECV + 5, delta(1, 502, T1, "0.4000", "1.00")),
        wrapped(RECV + 6, delta(1, 503, T1, "0.4000", "1.00")),
    ]
    (tmp_path / "parts").mkdir()
    parts = [
        write(tmp_path / "parts" / "a.jsonl", first),
        write(tmp_path / "parts" / "b.jsonl", second),
    ]
    items = list(read_records(parts))
    a, b = conn_of(first[0]), conn_of(second[0])
    assert [
        (i.kind, i.conn_id, i.frame_no, i.detail.get("continues"))
        for i in items
        if isinstance(i, JournalRecord)
    ] == [
        ("connect", a, 0, None),
        ("frame", a, 1, None),
        ("frame", a, 2, None),
        ("connect", b, 0, a),  # the session goes on: books and seq carry over
        ("frame", b, 1, None),
        ("frame", b, 2, None),
    ]
    assert sourceless(read_records([tmp_path / "parts"])) == sourceless(items)
    at = book_from_journal(iter(items), T1)
    assert (at.stale, at.book.yes) == (False, {40000: 1000})

    def keys(paths: list[Path]) -> set[tuple[int, int, bytes]]:
        return {(f.conn_id, f.frame_no, f.raw) for f in frames_of(read_records(paths))}

    together = keys(parts)
    assert len(together) == 4
    assert keys([parts[0]]) | keys([parts[1]]) == together
    assert keys([parts[1], parts[0]]) == together
    assert keys([parts[0], parts[1], parts[0]]) == together
    # One session across the files: seq checked across the boundary, no restart.
    replayer = Replayer(seq_check="contiguous")
    for item in items:
        replayer.feed(item)
    assert [v.frames for v in replayer.continuity.sessions.values()] == [4]
    assert replayer.continuity.markets[T1].gaps == 0
    lost = write(tmp_path / "lost.jsonl", second[1:])  # seq 502 missing at the boundary
    replayer = Replayer(seq_check="contiguous")
    for item in read_records([parts[0], lost]):
        replayer.feed(item)
    assert replayer.continuity.markets[T1].gaps == 1


def test_frames_out_of_order_within_the_window_are_put_back_beyond_it_said(
    tmp_path: Path,
) -> None:
    """seq 50 read 10 frames late is put back in seq order (one session, marked); seq 3 read
    77 frames late (beyond REORDER_FRAMES = 64) is one problem at its line and starts a new
    session (no book is trusted across the break); every frame is still read."""
    order = [1, 2, *range(4, 50), *range(51, 61), 50, *range(61, 81), 3]
    lines = [
        wrapped(RECV + n, snapshot(1, 1, T1, yes=[("0.4000", "10.00")]))
        if seq == 1
        else wrapped(RECV + n, delta(1, seq, T1, "0.4000", "1.00"))
        for n, seq in enumerate(order)
    ]
    path = write(tmp_path / "c.jsonl", lines)
    items = list(read_records([path], SourceOptions(seq_check="contiguous")))
    problems = [i for i in items if isinstance(i, JournalProblem)]
    assert problems == [
        JournalProblem(
            str(path),
            80,
            "seq out of order beyond the reorder window (64 frames): sid 1 seq 3 after 80; "
            "a new session from here (does the file mix connections?)",
            lines=0,  # read on: no line lost
        )
    ]
    records = [i for i in items if isinstance(i, JournalRecord)]
    seqs = [
        (i.kind, i.conn_id, orjson.loads(i.raw)["seq"] if i.kind == "frame" else None)
        for i in records
    ]
    late, first = conn_of(lines[-1]), conn_of(lines[0])
    assert seqs == [
        ("connect", first, None),
        *[("frame", first, seq) for seq in (1, 2, *range(4, 81))],
        ("disconnect", first, None),
        ("connect", late, None),
        ("frame", late, 3),
    ]
    assert [i.detail for i in records if i.kind == "frame" and i.detail] == [{"reordered": True}]
    assert records[-3].detail == {"reason": "seq out of order: sid 1 seq 3 after 80"}
    replayer = Replayer()
    for item in items:
        replayer.feed(item)
    views = list(replayer.continuity.sessions.values())
    assert [(v.frames, v.reordered) for v in views] == [(79, 1), (1, 0)]
    batched = Replayer()  # the flat-out replay's path: a run of frames counted at once
    batched.feed_all(items)
    assert batched.continuity.sessions == replayer.continuity.sessions
    assert batched.continuity.markets == replayer.continuity.markets
    assert batched.stats == replayer.stats
    # The command line says it (the line, then what was done) and exits 1; no line is lost.
    result = kalshi("replay", str(path), "--format", "jsonl", "--seq-check", "contiguous",
                    cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    errors = result.stderr.splitlines()
    assert errors[0] == f"{path}:80: {problems[0].reason}"
    assert errors[-1] == "seq out of order: read on in new sessions (listed above)"
    assert not any("not read" in line for line in errors)


def test_bare_frames_take_the_exchange_time(tmp_path: Path) -> None:
    lines = [
        snapshot(1, 1, T1, yes=[("0.4000", "10.00")]),  # no time: the next known one
        delta(1, 2, T1, "0.4000", "-2.00", ts_ms=RECV + 5),
        delta(1, 3, T1, "0.4000", "-1.00"),  # no time: the previous one
    ]
    items = list(read_records([write(tmp_path / "bare.jsonl", lines)]))
    connect = items[0]
    assert isinstance(connect, JournalRecord)
    assert connect.detail["time"] == (
        "bare frames; no receive time: received_at = the exchange time (msg.ts_ms, msg.ts), "
        "else the previous frame's"
    )
    assert connect.detail["seq_check"] == "contiguous"
    assert [(f.wall_us, f.raw) for f in frames_of(items)] == [
        ((RECV + 5) * 1000, lines[0]),
        ((RECV + 5) * 1000, lines[1]),
        ((RECV + 5) * 1000, lines[2]),
    ]


def test_damaged_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    lines = _capture()
    lines[1] = b'{"recv_ms": 5, "event": '
    lines[2] = b'{"event": {"type": "trade"}}'
    data = b"".join(line + b"\n" for line in lines)
    path = tmp_path / "c.ndjson.gz"
    path.write_bytes(gzip.compress(data)[:-6])  # torn gzip tail
    items = list(read_records([path]))
    problems = [(p.line_no, p.reason.split(":")[0]) for p in items if isinstance(p, JournalProblem)]
    assert problems[:2] == [(2, "invalid JSON"), (3, "no 'recv_ms' field (the receive time)")]
    assert problems[-1] == (6, "torn gzip tail (incomplete last member)")
    unknown = write(tmp_path / "odd.jsonl", [b'{"a": 1}', b'{"a": 2}'])
    assert list(read_records([unknown])) == [
        JournalProblem(
            str(unknown),
            1,
            "not a capture: cannot tell which field is the frame (no field holds one): "
            "--frame-field; 2 line(s) of the file not read",
            2,
        )
    ]


def test_a_capture_cut_mid_line_into_files_read_together_is_joined(tmp_path: Path) -> None:
    """A capture cut at a byte offset (``split -b``) and read together: the torn tail of
    one file and the head of the next make one line again (read as the next file's line
    1); nothing is lost, the frames are those of the uncut file (each file's with its own
    identity: docs/replay.md, "Identity of a capture's rows"). Read alone, each part
    reports its torn line; detection never decides on a torn line."""
    data = b"".join(line + b"\n" for line in _capture())
    cut = data.index(b"\n") + 1 + 40  # inside the second line
    head, tail = (
        write_raw(tmp_path / "paa.jsonl", data[:cut]),
        write_raw(tmp_path / "pab.jsonl", data[cut:]),
    )
    items = list(read_records([head, tail]))
    assert [p for p in items if isinstance(p, JournalProblem)] == []
    assert [(f.wall_us, f.source) for f in frames_of(items)] == [
        (RECV * 1000, f"{head}:1"),
        ((RECV + 1) * 1000, f"{tail}:1"),
        ((RECV + 2) * 1000, f"{tail}:2"),
        ((RECV + 3) * 1000, f"{tail}:3"),
        ((RECV + 4) * 1000, f"{tail}:4"),
    ]
    whole = write_raw(tmp_path / "whole.jsonl.txt", data)
    # The frames of the uncut file, each file's with its own identity (its first frame's).
    assert [(f.wall_us, f.raw) for f in frames_of(read_records([whole]))] == [
        (f.wall_us, f.raw) for f in frames_of(items)
    ]
    joined = data[: data.index(b"\n", cut)]
    assert [(f.conn_id, f.frame_no) for f in frames_of(items)] == [
        (conn_of(data[: data.index(b"\n")]), 1),
        *[(conn_of(joined[joined.rindex(b"\n") + 1 :]), n) for n in (1, 2, 3, 4)],
    ]
    torn_head = data[cut : data.index(b"\n", cut)]
    with pytest.raises(orjson.JSONDecodeError) as invalid:
        orjson.loads(torn_head)
    alone = [list(read_records([head])), list(read_records([tail]))]
    assert [
        (p.path, p.line_no, p.reason) for a in alone for p in a if isinstance(p, JournalProblem)
    ] == [
        (str(head), 2, "torn last line (40 bytes, no newline)"),
        (str(tail), 1, f"invalid JSON: {invalid.value}"),
    ]
    result = kalshi("replay", str(head), "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 1
    # a capture: no word of the journal's disk (tester F8)
    assert result.stderr.splitlines()[-1] == "1 file(s) end torn, read up to the cut"
    result = kalshi("replay", str(head), str(tail), "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ours = b"".join(
        encode_frame("g1", 7, n, "in", BASE_US + n, BASE_US + n, raw)
        for n, raw in enumerate([trade(1, 1, T1, "a", "0.4000", "1.00")] * 3, 1)
    )
    journal = write_raw(tmp_path / "cut.log", ours[20:])  # starts inside its first line
    items = list(read_records([journal]))
    assert [p.line_no for p in items if isinstance(p, JournalProblem)] == [1]
    assert [(r.gatherer_id, r.frame_no) for r in frames_of(items)] == [("g1", 2), ("g1", 3)]


def test_time_prefixed_lines_are_a_capture_shape(tmp_path: Path) -> None:
    """``<receive time> <frame>`` (tardis.dev's raw form): the time ahead of the JSON is
    the receive time (RFC 3339, 7 digits truncated to the µs, or an epoch number); the
    frame's bytes are kept exactly."""
    frames = [
        snapshot(1, 10, T1, yes=[("0.4000", "10.00")]),
        delta(1, 11, T1, "0.4000", "-2.00"),
        delta(1, 12, T1, "0.4000", "1.00"),
    ]
    path = write(
        tmp_path / "tardis.jsonl",
        [
            b"2026-08-05T03:45:40.0250007Z " + frames[0],
            b"2026-08-05T03:45:40.7310000Z\t" + frames[1],
            b"1785901540731001 " + frames[2],
        ],
    )
    items = list(read_records([path]))
    connect = items[0]
    assert isinstance(connect, JournalRecord)
    assert connect.detail["time"] == (
        "bare frames; received_at from the time ahead of each line (unit by size)"
    )
    assert [(f.wall_us, f.raw) for f in frames_of(items)] == [
        (1785901540025000, frames[0]),
        (1785901540731000, frames[1]),
        (1785901540731001, frames[2]),
    ]
    assert not [p for p in items if isinstance(p, JournalProblem)]


def test_a_json_array_is_refused_whole_with_its_line_count(tmp_path: Path) -> None:
    lines = _capture()
    body = b"[" + b",\n".join(lines) + b"]\n"
    path = write_raw(tmp_path / "array.json", body)
    assert list(read_records([path])) == [
        JournalProblem(
            str(path),
            1,
            "not a capture: a JSON array, not JSON lines (one frame per line): convert it "
            f"with jq -c '.[]' {path} > array.jsonl; 5 line(s) of the file not read",
            5,
        )
    ]
    pretty = write_raw(tmp_path / "pretty.json", b"\n[\n" + b",\n".join(lines) + b"\n]\n")
    assert [(p.line_no, p.lines) for p in read_records([pretty])] == [(1, 1), (2, 7)]


def test_an_unreadable_receive_time_is_an_error_never_a_fallback(tmp_path: Path) -> None:
    frames = [snapshot(1, 10, T1, yes=[("0.4000", "10.00")]), delta(1, 11, T1, "0.4000", "1.00")]
    first = write(
        tmp_path / "first.jsonl",
        [b'{"recv_ms":"soon","event":%s}' % frames[0], wrapped(RECV, frames[1])],
    )
    assert list(read_records([first])) == [
        JournalProblem(
            str(first),
            1,
            "not a capture: receive time 'recv_ms': cannot read 'soon' (give --time-field, "
            "or fix the value); 2 line(s) of the file not read",
            2,
        )
    ]
    later = write(
        tmp_path / "later.jsonl",
        [wrapped(RECV, frames[0]), b'{"recv_ms":"1785901540025x","event":%s}' % frames[1]],
    )
    items = list(read_records([later]))
    assert [p for p in items if isinstance(p, JournalProblem)] == [
        JournalProblem(
            str(later), 2, "recv_ms: timestamp: not an RFC 3339 string: '1785901540025x'"
        )
    ]
    assert [f.wall_us for f in frames_of(items)] == [RECV * 1000]


def test_the_command_line_names_fields_and_reports_continuity(tmp_path: Path) -> None:
    """Two object fields and two numbers: detection refuses, the user names them."""
    lines = [
        orjson.dumps({"seen": RECV + n, "n": n + 1, "meta": {"type": "x"}, "body": orjson.loads(f)})
        for n, f in enumerate(
            [
                snapshot(1, 1, T1, yes=[("0.4000", "10.00")]),
                delta(1, 2, T1, "0.4000", "-2.00"),
                delta(1, 4, T1, "0.4000", "-1.00"),  # seq 3 lost: contiguous capture
                delta(1, 5, T1, "0.4000", "-1.00"),
            ]
        )
    ]
    path = write(tmp_path / "odd.jsonl", lines)
    refused = kalshi("replay", str(path), "--format", "jsonl", cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[0] == (
        f"{path}:1: not a capture: cannot tell which field is the frame "
        "(fields ['meta', 'body'] each hold one): --frame-field; 4 line(s) of the file not read"
    )
    frame_only = kalshi(
        "replay", str(path), "--format", "jsonl", "--frame-field", "body", cwd=tmp_path
    )
    assert frame_only.stderr.splitlines()[0] == (
        f"{path}:1: not a capture: cannot tell which field is the receive time "
        "['seen', 'n']: --time-field; 4 line(s) of the file not read"
    )
    named = ("--frame-field", "body", "--time-field", "seen", "--time-unit", "ms")
    result = kalshi(
        "replay", "-", "--format", "jsonl", "--continuity", "--seq-check", "contiguous", *named,
        cwd=tmp_path,
        stdin=path.read_bytes(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [orjson.loads(line)["table"] for line in result.stdout.splitlines()] == [
        "orderbook_snapshots",
        "orderbook_deltas",
        "gaps",
        "orderbook_deltas",
        "orderbook_deltas",
    ]
    first = conn_of(lines[0], b'"body":', "seen")
    session = (
        f"session {first} (-): 4 frames 2026-11-24T22:59:00.000Z .. "
        "2026-11-24T22:59:00.003Z; seq check contiguous (chosen (--seq-check)); "
        "frame in 'body'; received_at from 'seen' (ms); ended: end of capture"
    )
    assert result.stderr.splitlines() == [
        "continuity:",
        "  " + session,
        f"  {T1}: 1 snapshot(s), 3 delta(s), 0 trade(s) in 1 session(s); 1 sequence gap(s): "
        "frames lost; book stale: sequence gap: sid 1 seq 3 missing",
        "replayed 4 frames (5 journal records); rows: gaps 1, orderbook_deltas 3, "
        "orderbook_snapshots 1",
        session,
    ]


async def test_point_in_time_reads_later_segments_for_their_gap_markers_alone(
    tmp_path: Path,
) -> None:
    """A segment named (opened) past --at plus the grace is read for its gap markers alone
    (a restart's ``outage`` gap covering --at is journaled there): its frames and other
    markers are not decoded; the marker carries its connection's label, and the book at
    --at is stale with the outage's span. Read whole, the same segment yields everything."""
    (first,) = await write_journal(tmp_path / "j", scripted_session())
    stamp = 1_795_561_140  # write_journal's clock: 2026-11-24T22:59:00Z
    t, back = BASE_US, OB_CONN + 61_000_000  # the next run's order-book connection
    down = "orderbook-0: gatherer down since its last orderbook_delta frame"
    row = [t + 2000, t + 61_000_000, "g-1", back, 1, None, "outage", None, None, down]
    next_run = [
        ("marker", back, "connect", t + 61_000_000, {"label": "orderbook-0"}),
        ("in", back, 1, t + 61_000_100, subscribed(1, "orderbook_delta")),
        ("in", back, 2, t + 61_000_200, snapshot(1, 1, T1, yes=[("0.3000", "1.00")])),
        ("marker", back, "gap", t + 61_000_300, {"row": row}),
    ]
    (second,) = await write_journal(tmp_path / "next", next_run)
    late = first.parent / first.name.replace("20261124T225900", "20261124T230000")
    second.rename(late)
    at = t + 2500
    assert stamp * 1_000_000 <= at < stamp * 1_000_000 + 60_000_000 - STOP_GRACE_US
    read = list(read_records([tmp_path / "j"], SourceOptions(until_us=at)))
    assert not [i for i in read if isinstance(i, JournalProblem)]
    past = [i for i in read if isinstance(i, JournalRecord) and i.conn_id == back]
    assert [(i.kind, i.wall_us, i.label, i.detail) for i in past] == [
        ("gap", t + 61_000_300, "orderbook-0", {"row": row})
    ]
    found = book_from_journal(iter(read), T1, at)
    span = "2026-11-24T22:59:00.003000Z to 2026-11-24T23:00:01.001000Z"
    assert (found.stale, found.as_of_us, found.detail) == (
        True,
        t + 900,
        f"outage from {span}: {down}",
    )
    # A journal cut at T1's delta at t+900 (killed) with that later segment: its gap marker,
    # covering other times, says nothing of t+901: not recorded, as without the segment.
    refused = [t + 61_000_000, None, "g-1", back, 1, T2, "subscription_refused", None, None, "x"]
    (cut,) = await write_journal(tmp_path / "cut", scripted_session()[:-1])
    (other,) = await write_journal(
        tmp_path / "other", [("marker", back, "gap", t + 61_000_300, {"row": refused})]
    )
    other.rename(cut.parent / late.name)
    killed = book_from_journal(
        read_records([tmp_path / "cut"], SourceOptions(until_us=t + 901)), T1, t + 901
    )
    assert (killed.stale, killed.as_of_us, killed.detail) == (
        True,
        t + 900,
        "nothing journaled from 2026-11-24T22:59:00.001900Z to 2026-11-24T22:59:00.001901Z:"
        " not recorded",
    )
    whole = list(read_records([tmp_path / "j"]))
    assert [i.kind for i in whole if isinstance(i, JournalRecord) and i.conn_id == back] == [
        "connect", "frame", "frame", "gap"
    ]  # fmt: skip


async def test_a_journal_replayed_under_the_filtered_rule(tmp_path: Path) -> None:
    """Our journal (a seq gap on the order-book connection) with --seq-check filtered:
    the skip is counted, no gap row, and the book is built through it."""
    files = await write_journal(tmp_path / "j", scripted_session())
    strict, filtered = Replayer(), Replayer(seq_check="filtered")
    strict_tables = [t for item in read_records(files) for t, _ in strict.feed(item)]
    tables = [t for item in read_records(files) for t, _ in filtered.feed(item)]
    assert strict_tables.count("gaps") == 1
    assert tables == [t for t in strict_tables if t != "gaps"]
    proc = filtered.processor("g-1")
    assert (proc.counts["seq_skip"], proc.counts["seq_gap"]) == (1, 0)
    # Under the live rule the gap (revealed by a T1 delta) hits both markets on the sid.
    views = strict.continuity.markets
    assert (views[T1].gaps, views[T2].gaps) == (1, 1)
    assert views[T2].verdict(None) == "1 sequence gap(s): frames lost; book consistent"


def test_auto_reads_many_skips_as_a_filtered_capture(tmp_path: Path) -> None:
    """Every other seq of the book subscription missing over 40 frames: filtered."""
    lines = [wrapped(RECV, snapshot(1, 1, T1, yes=[("0.4000", "10.00")]))]
    lines += [wrapped(RECV + n, delta(1, 1 + 2 * n, T1, "0.4000", "1.00")) for n in range(1, 41)]
    connect = next(iter(read_records([write(tmp_path / "c.jsonl", lines)])))
    assert isinstance(connect, JournalRecord)
    assert (connect.detail["seq_check"], connect.detail["seq_check_reason"]) == (
        "filtered",
        "auto: 40 of 40 seq steps in the first 41 frames skip numbers (a filtered capture)",
    )


def test_a_few_lines_of_a_filtered_capture_write_no_false_gaps(tmp_path: Path) -> None:
    """Issue F10b: the first 5 lines of the gold capture (one market of wider
    subscriptions: seq skips) from stdin read as contiguous and wrote 2 seq_gap rows."""
    gold = Path(__file__).parents[1] / "data" / "kalshi-gold15m" / "events"
    with gzip.open(gold / "KXGOLD15M-26AUG050800-00" / "2026-08-05.ndjson.gz") as fh:
        head = b"".join(fh.readline() for _ in range(5))
    result = kalshi("replay", "-", "--format", "jsonl", cwd=tmp_path, stdin=head)
    assert result.returncode == 0, result.stderr
    tables = [orjson.loads(line)["table"] for line in result.stdout.splitlines()]
    assert tables == ["orderbook_snapshots"] + ["orderbook_deltas"] * 4
    assert (
        "seq check filtered (auto: 2 of 4 seq steps in the first 5 frames skip numbers"
        " (too few steps to take a skip for a loss))"
    ) in result.stderr


def test_the_first_refused_frames_are_located_and_the_rest_counted(tmp_path: Path) -> None:
    """Issue F8: frames of valid JSON with bad fields were counted (``invalid 3,
    unknown_type 1``) but not located. The first ten are listed: file:line (a capture) or
    gatherer, conn and frame (our journal), the field and why; the rest are counted."""
    bad = [delta(1, n, T1, "0.4000", "1.00", side="maybe") for n in range(2, 13)]
    lines = [snapshot(1, 1, T1, yes=[("0.4000", "5.00")]), *bad, frame("market_mood", 1, 13)]
    path = write(tmp_path / "c.jsonl", [wrapped(RECV + n, raw) for n, raw in enumerate(lines)])
    result = kalshi("replay", str(path), "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    why = "invalid: orderbook_delta: side: expected 'yes' or 'no', got 'maybe'"
    assert BAD_FRAMES_LISTED == 10
    listed = [f"{path}:{n}: {why}" for n in range(2, 12)]
    assert [line for line in result.stderr.splitlines() if line.startswith(str(path))] == listed
    assert result.stderr.splitlines()[-1] == (
        "frames flagged by the pipeline: invalid 11, unknown_type 1"
        " (the first 10 refused listed above)"
    )
    journal = Replayer()
    for item in [
        JournalRecord("g1", 3, 7, "in", BASE_US, BASE_US, "frame", bad[0]),
        JournalRecord("g1", 3, 8, "in", BASE_US, BASE_US, "frame", frame("market_mood", 1, 3)),
    ]:
        journal.feed(item)
    assert journal.stats.bad_frames == [
        f"gatherer g1 conn 3 frame 7: {why}",
        "gatherer g1 conn 3 frame 8: unknown_type: market_mood",
    ]


def test_a_time_prefixed_capture_cut_inside_its_first_time_reports_the_line_torn(
    tmp_path: Path,
) -> None:
    """Cut inside the digits of its first line's time (``split -b``), the rest of the line
    still read as ``<time> <frame>``: ``1540025`` as 1 540 025 s, a frame replayed in 1970.
    The shape is decided against the next line: fewer digits than it (or no time at all,
    cut at the space) is a torn line, reported, and the next line decides."""
    frames = [
        snapshot(1, 10, T1, yes=[("0.4000", "10.00")]),
        delta(1, 11, T1, "0.4000", "-2.00"),
        delta(1, 12, T1, "0.4000", "1.00"),
    ]
    data = b"".join(b"%d %s\n" % (RECV + n, raw) for n, raw in enumerate(frames))
    for cut, reason in (
        (
            6,
            "torn first line: its receive time 1140000 has 7 digits before any point, the"
            f" next line's {RECV + 1} 13 (cut inside the time)",
        ),
        (13, "torn first line: no receive time ahead of its frame, as the next line has"),
    ):
        path = write_raw(tmp_path / f"cut{cut}.jsonl", data[cut:])
        items = list(read_records([path]))
        assert [(p.line_no, p.reason) for p in items if isinstance(p, JournalProblem)] == [
            (1, reason)
        ]
        assert [(f.wall_us, f.raw) for f in frames_of(items)] == [
            ((RECV + 1) * 1000, frames[1]),
            ((RECV + 2) * 1000, frames[2]),
        ]
    whole = write_raw(tmp_path / "whole.jsonl", data)
    assert [f.wall_us for f in frames_of(read_records([whole]))] == [
        (RECV + n) * 1000 for n in range(3)
    ]


def test_a_sessions_first_two_frames_swapped_are_put_back_not_a_restart(
    tmp_path: Path,
) -> None:
    """seq 501 read before 500, the session's first two frames on sid 1: a small step down
    at the very start is put back in order within the window (was: read as a restart, a
    disconnect and a second session); a step down after frames left the window, or far
    below, is still a restart (test_a_seq_restart_starts_a_new_session)."""
    lines = [
        wrapped(RECV, delta(1, 501, T1, "0.4000", "-2.00")),
        wrapped(RECV + 1, snapshot(1, 500, T1, yes=[("0.4000", "10.00")])),
        wrapped(RECV + 2, delta(1, 502, T1, "0.4000", "1.00")),
    ]
    path = write(tmp_path / "c.jsonl", lines)
    items = list(read_records([path], SourceOptions(seq_check="contiguous")))
    assert [i for i in items if isinstance(i, JournalProblem)] == []
    records = [i for i in items if isinstance(i, JournalRecord)]
    assert [
        (i.kind, i.conn_id, i.frame_no, orjson.loads(i.raw)["seq"] if i.kind == "frame" else None)
        for i in records
    ] == [
        ("connect", conn_of(lines[0]), 0, None),  # the first frame read: seq 501's
        ("frame", conn_of(lines[0]), 1, 500),
        ("frame", conn_of(lines[0]), 2, 501),
        ("frame", conn_of(lines[0]), 3, 502),
    ]
    assert [i.detail for i in records if i.kind == "frame"] == [{"reordered": True}, {}, {}]
    replayer = Replayer(seq_check="contiguous")
    for item in items:
        replayer.feed(item)
    views = list(replayer.continuity.sessions.values())
    assert [(v.frames, v.reordered) for v in views] == [(3, 1)]
    assert replayer.continuity.markets[T1].gaps == 0
    at = book_from_journal(iter(items), T1)
    assert (at.stale, at.book.yes) == (False, {40000: 900})


def test_a_captures_lifecycle_frames_make_its_markets_rows(tmp_path: Path) -> None:
    """A capture has no listing: its ``created`` lifecycle frame makes the market's row
    through a registry, as live, and a later event moves it (was: 2 market_lifecycle rows
    and no markets row, outside tester F10). Its open_time (2023) is past: the next record's
    time opens it (``active``, as live's registry on its 1 s timer, kalshi-api.md §5)."""
    frames = Path(__file__).parent.parent / "data" / "frames"
    created = (frames / "market_lifecycle_created.json").read_bytes().strip()
    determined = (frames / "market_lifecycle_determined.json").read_bytes().strip()
    path = write(tmp_path / "lc.jsonl", [wrapped(RECV, created), wrapped(RECV + 1000, determined)])
    result = kalshi("replay", str(path), "--format", "jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(r["table"], r.get("status"), r.get("event_type")) for r in rows] == [
        ("market_lifecycle", None, "created"),
        ("markets", "initialized", None),
        ("markets", "active", None),
        ("market_lifecycle", None, "determined"),
        ("markets", "determined", None),
    ]
    assert rows[2]["updated_at"] == (RECV + 1000) * 1000  # the determined frame's receipt
    market = rows[4]
    assert (
        market["ticker"],
        market["event_ticker"],
        market["close_time"],
        market["updated_at"],
        market["gatherer_id"],
    ) == ("INXD-23SEP14-B4487", "INXD-23SEP14", 1694721600000000, (RECV + 1000) * 1000, "capture")
