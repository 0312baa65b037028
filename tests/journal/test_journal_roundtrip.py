"""Write through JournalWriter, read back with read_journal: byte-exact, exact counts."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import orjson
import pytest
import trio
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from journal_support import journal_config

from kalshi.journal import JournalProblem, JournalRecord, JournalWriter, connections, read_journal
from kalshi.journal.format import decode_line, encode_frame, encode_marker

DELTA = (
    '{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"KXBTC-25NOV24-T99",'
    '"price_dollars":"0.4200","delta_fp":"-54.00","side":"yes","ts":"2026-11-24T22:59:00Z"}}'
)
GARBAGE = bytes(range(256)) + b"\xff\xfe\x80{not json"
HUGE = '{"type":"orderbook_snapshot","msg":{"yes":[' + ",".join(["[1,2]"] * 700_000) + "]}}"


def records(items: list[JournalRecord | JournalProblem]) -> list[JournalRecord]:
    return [i for i in items if isinstance(i, JournalRecord)]


def test_encode_decode_frames_are_byte_exact() -> None:
    for raw in (DELTA, DELTA.encode(), GARBAGE, b"", "caf\u00e9 \U0001f600", "\ud800lone"):
        line = encode_frame("g-1", 7, 1, "in", 10, 20, raw)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        record = decode_line(line[:-1])
        expected = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        assert record.raw == expected
        assert (record.gatherer_id, record.conn_id, record.frame_no) == ("g-1", 7, 1)
        assert (record.direction, record.wall_us, record.mono_us, record.kind) == (
            "in",
            10,
            20,
            "frame",
        )


# The lines as they would be without their checksum member: what the CRC-32 covers.
FRAME_BODY = (
    b'{"gatherer_id":"g-1","conn_id":7,"frame_no":3,"direction":"out","wall_us":10,'
    b'"mono_us":20,"kind":"frame","b64":"/w=="}'
)
MARKER_BODY = (
    b'{"gatherer_id":"g-1","conn_id":7,"frame_no":3,"direction":"local","wall_us":10,'
    b'"mono_us":20,"kind":"disconnect","detail":{"reason":"x"}}'
)


def test_line_fields() -> None:
    assert orjson.loads(encode_frame("g-1", 7, 3, "out", 10, 20, b"\xff")) == {
        "gatherer_id": "g-1",
        "conn_id": 7,
        "frame_no": 3,
        "direction": "out",
        "wall_us": 10,
        "mono_us": 20,
        "kind": "frame",
        "b64": base64.b64encode(b"\xff").decode(),
        "crc": f"{zlib.crc32(FRAME_BODY):08x}",
    }
    assert orjson.loads(encode_marker("g-1", 7, 3, "disconnect", 10, 20, {"reason": "x"})) == {
        "gatherer_id": "g-1",
        "conn_id": 7,
        "frame_no": 3,
        "direction": "local",
        "wall_us": 10,
        "mono_us": 20,
        "kind": "disconnect",
        "detail": {"reason": "x"},
        "crc": f"{zlib.crc32(MARKER_BODY):08x}",
    }


@pytest.mark.parametrize("compress", [False, True])
async def test_round_trip_through_files(tmp_path: Path, compress: bool) -> None:
    cfg = journal_config(tmp_path, compress=compress)
    writer = JournalWriter(cfg, "g-1", flush_interval=0.05)
    frames: list[tuple[int, int, str, bytes]] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.record_marker(
                5, "connect", 1, 2, label="orderbook-0", channels=["orderbook_delta"], url="ws://x"
            )
            writer.record_frame(5, 1, "out", 3, 4, b'{"id":1,"cmd":"subscribe"}')
            writer.record_marker(5, "subscribe", 5, 6, sid=2, tickers=["A", "B"])
            for n, raw in enumerate([DELTA, DELTA.encode(), GARBAGE, HUGE, b""], start=1):
                writer.record_frame(5, n, "in", 10 + n, 20 + n, raw)
                frames.append((n, 10 + n, "in", raw if isinstance(raw, bytes) else raw.encode()))
                await writer.flush()  # one flush (one zstd frame) per record
            writer.record_marker(5, "resnapshot", 40, 41, ticker="A")
            writer.record_marker(5, "gap", 42, 43, sid=2, expected=4, got=6)
            writer.record_marker(5, "disconnect", 50, 51, reason="silence")
            nursery.cancel_scope.cancel()
    assert writer.records == 11
    assert writer.records_written == 11
    assert writer.files_closed == [writer.files_closed[0]]
    path = writer.files_closed[0]
    assert path.name.endswith(".jsonl.zst" if compress else ".jsonl")
    assert path.parent.parent.name == "g-1"
    items = list(read_journal([tmp_path / "journal"]))
    assert all(isinstance(i, JournalRecord) for i in items)
    got = records(items)
    assert [r.kind for r in got] == (
        ["connect", "frame", "subscribe"] + ["frame"] * 5 + ["resnapshot", "gap", "disconnect"]
    )
    assert [(r.frame_no, r.wall_us, r.direction, r.raw) for r in got[3:8]] == frames
    assert got[1].raw == b'{"id":1,"cmd":"subscribe"}' and got[1].direction == "out"
    assert got[0].detail == {
        "label": "orderbook-0",
        "channels": ["orderbook_delta"],
        "url": "ws://x",
    }
    assert got[2].detail == {"sid": 2, "tickers": ["A", "B"]}
    # markers carry the last received frame number of their connection
    assert [r.frame_no for r in got if r.kind != "frame"] == [0, 0, 5, 5, 5]
    assert {r.label for r in got} == {"orderbook-0"}
    assert {r.channels for r in got} == {("orderbook_delta",)}
    info = connections([tmp_path / "journal"])
    assert list(info) == [("g-1", 5)]
    assert info["g-1", 5].label == "orderbook-0"
    assert info["g-1", 5].url == "ws://x"
    if compress:
        # several complete zstd frames, the file ends cleanly
        data = path.read_bytes()
        whole = zstandard.ZstdDecompressor().decompressobj()
        assert whole.decompress(data) and whole.eof
        assert whole.unused_data != b""


async def test_writer_counts_and_metrics(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    before = {
        n: sample(n)
        for n in (
            "kalshi_journal_records_total",
            "kalshi_journal_bytes_written_total",
            "kalshi_journal_files_rotated_total",
        )
    }
    writer = JournalWriter(journal_config(tmp_path), "g-1")
    lines = [encode_frame("g-1", 1, n, "in", n, n, DELTA) for n in range(1, 101)]
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for n in range(1, 101):
                writer.record_frame(1, n, "in", n, n, DELTA)
            nursery.cancel_scope.cancel()
    size = sum(map(len, lines))
    assert writer.bytes_written == size
    assert writer.files_closed[0].read_bytes() == b"".join(lines)
    assert sample("kalshi_journal_records_total") - before["kalshi_journal_records_total"] == 100
    assert (
        sample("kalshi_journal_bytes_written_total") - before["kalshi_journal_bytes_written_total"]
        == size
    )
    assert (
        sample("kalshi_journal_files_rotated_total") - before["kalshi_journal_files_rotated_total"]
        == 1
    )


def test_bad_arguments(tmp_path: Path) -> None:
    writer = JournalWriter(journal_config(tmp_path), "g-1")
    with pytest.raises(ValueError, match="direction"):
        writer.record_frame(1, 1, "sideways", 1, 1, b"x")
    with pytest.raises(ValueError, match="unknown marker kind"):
        writer.record_marker(1, "reboot", 1, 1)
    assert writer.records == 0


@given(raw=st.binary(max_size=512) | st.text(max_size=256))
@settings(max_examples=300, deadline=None)
def test_any_frame_round_trips_byte_exact(raw: bytes | str) -> None:
    line = encode_frame("g", 1, 2, "in", 3, 4, raw)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    expected = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    assert decode_line(line[:-1]).raw == expected


@given(
    raw=st.binary(max_size=256) | st.text(max_size=128),
    gatherer_id=st.sampled_from(["g-1", 'quo"te\\', "caf\u00e9", ""]) | st.text(max_size=8),
    numbers=st.tuples(*[st.integers(0, 2**63 - 1)] * 4),
    direction=st.sampled_from(["in", "out", "local", "in\n"]),
)
@settings(max_examples=300, deadline=None)
def test_frame_line_fast_encoder_writes_the_general_bytes(
    raw: bytes | str, gatherer_id: str, numbers: tuple[int, int, int, int], direction: str
) -> None:
    """``encode_frame`` formats the common frame from a preformatted head: byte for byte
    the line the general (dict) encoder writes, for any frame, id, numbers and direction."""
    from kalshi.journal.format import _encode_frame_general

    conn_id, frame_no, wall_us, mono_us = numbers
    args = (gatherer_id, conn_id, frame_no, direction, wall_us, mono_us, raw)
    try:
        general: object = _encode_frame_general(*args)
    except orjson.JSONEncodeError as exc:  # a gatherer id with a lone surrogate
        general = ("refused", type(exc))
    try:
        fast: object = encode_frame(*args)
    except orjson.JSONEncodeError as exc:
        fast = ("refused", type(exc))
    assert fast == general


_VALUES = (
    st.integers(-(2**70), 2**70)
    | st.booleans()
    | st.none()
    | st.text(max_size=12)
    | st.sampled_from(["in", "out", "local", "frame", "connect", "g-1"])
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
_KEYS = ("gatherer_id", "conn_id", "frame_no", "direction", "wall_us", "mono_us", "kind", "text")


@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "gatherer_id": st.just("g-1") | _VALUES,
            "conn_id": st.integers(0, 9) | _VALUES,
            "frame_no": st.integers(0, 9) | _VALUES,
            "direction": st.sampled_from(["in", "out"]) | _VALUES,
            "wall_us": st.integers(0, 2**62) | _VALUES,
            "mono_us": st.integers(0, 2**62) | _VALUES,
            "kind": st.just("frame") | _VALUES,
            "text": st.text(max_size=20) | _VALUES,
            "b64": st.just("/w==") | _VALUES,
            "detail": _VALUES,
        },
    ),
    sealed=st.booleans(),
    escape=st.sampled_from([b"", b"\\ud800", b"\\u00e9", b"\\ud83d\\ude00"]),
)
@settings(max_examples=400, deadline=None)
def test_fast_and_general_line_decoders_agree(
    fields: dict[str, object], sealed: bool, escape: bytes
) -> None:
    """``decode_line`` reads common frame lines with a compiled decoder and the rest with
    the general one: on any line, valid or not, both give the same record or both refuse."""
    from kalshi.journal.format import _decode_general, _sealed

    body = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
    if escape and isinstance(fields.get("text"), str):  # an escape the encoder never writes
        body = body.replace(b'"text":"', b'"text":"' + escape, 1)
    line = _sealed(body)[:-1] if sealed else body
    try:
        general: object = _decode_general(body, None)
    except ValueError as exc:
        general = ("refused", str(exc))
    try:
        fast: object = decode_line(line)
    except ValueError as exc:
        fast = ("refused", str(exc))
    assert fast == general


@given(
    lines=st.lists(
        st.builds(
            dict,
            gatherer_id=st.sampled_from(["g-1", "g-2", 7]),
            conn_id=st.sampled_from([1, 2, 2**63, True]),
            frame_no=st.integers(0, 3),
            direction=st.sampled_from(["in", "out", "local"]),
            wall_us=st.integers(0, 3),
            mono_us=st.integers(0, 3),
            kind=st.sampled_from(["frame", "frame", "frame", "connect", "rest"]),
            text=st.sampled_from(['{"type":"trade"}', "é\u2028", None]),
        ),
        max_size=6,
    ),
    blank=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_decode_verified_is_decode_line_of_each(
    lines: list[dict[str, object]], blank: bool
) -> None:
    """``decode_verified`` (a verified chunk's lines at once) gives the records
    ``decode_line`` gives line by line, labels included, or ``None`` whenever a line is
    not a common frame line (that one taken alone decides)."""
    from kalshi.journal.format import Labels, decode_verified

    raw = [
        json.dumps({k: v for k, v in fields.items() if v is not None}, ensure_ascii=False).encode()
        for fields in lines
    ]
    if blank:
        raw.append(b"")
    labels: Labels = {("g-1", 1): ("books", ("orderbook_delta",))}
    at_once = decode_verified(raw, dict(labels))
    one_by_one: list[object] = []
    each_labels = dict(labels)
    for line in raw:
        try:
            one_by_one.append(decode_line(line, each_labels, verified=True))
        except ValueError:
            one_by_one.append(None)
    common = all(isinstance(r, JournalRecord) and r.kind == "frame" for r in one_by_one)
    if at_once is not None:
        assert common and at_once == one_by_one
    else:  # the general path alone reads a conn_id past int64 (msgspec's limit)
        assert not common or any(fields["conn_id"] == 2**63 for fields in lines)
