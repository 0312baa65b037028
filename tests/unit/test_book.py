"""Pure order-book state."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalshi.book import OrderBook
from kalshi.errors import BookError
from kalshi.models import BookDelta, BookSnapshot, Side


def snap(
    yes: tuple[tuple[int, int], ...] = (), no: tuple[tuple[int, int], ...] = ()
) -> BookSnapshot:
    return BookSnapshot("T", "id", yes, no)


def test_snapshot_then_deltas() -> None:
    book = OrderBook.from_snapshot(snap(((8000, 30000), (22000, 33300)), ((54000, 2000),)))
    book.apply_delta(BookDelta("T", "id", Side.YES, 22000, -33300))
    book.apply_delta(BookDelta("T", "id", Side.NO, 56000, 14600))
    book.apply_delta(BookDelta("T", "id", Side.YES, 30000, 150))
    assert book.levels(Side.YES) == ((8000, 30000), (30000, 150))
    assert book.levels(Side.NO) == ((54000, 2000), (56000, 14600))
    assert book.best_yes_bid() == (30000, 150)
    assert book.best_yes_ask() == (44000, 14600)
    assert book.yes_asks() == ((44000, 14600), (46000, 2000))
    assert book.spread() == 14000
    assert book.depth(Side.YES) == 30150
    assert book.problems() == []
    assert len(book) == 4


def test_negative_size_is_an_error_and_leaves_the_book_unchanged() -> None:
    book = OrderBook.from_snapshot(snap(((8000, 100),)))
    with pytest.raises(BookError, match="yes level 8000 would have size -100"):
        book.apply_delta(BookDelta("T", "id", Side.YES, 8000, -200))
    assert book.levels(Side.YES) == ((8000, 100),)


def test_crossed_book_is_reported() -> None:
    book = OrderBook.from_snapshot(snap(((60000, 100),), ((45000, 100),)))
    assert book.problems() == ["crossed book: yes bid >= yes ask (spread -5000)"]


def test_bad_snapshot_is_rejected() -> None:
    with pytest.raises(BookError, match="snapshot yes level 8000 has size 0"):
        OrderBook.from_snapshot(snap(((8000, 0),)))


def test_equality_and_copy() -> None:
    a = OrderBook.from_snapshot(snap(((1000, 5),)))
    b = a.copy()
    assert a == b
    b.apply_delta(BookDelta("T", "id", Side.YES, 1000, 1))
    assert a != b
    assert a.snapshot("id") == snap(((1000, 5),))


levels = st.dictionaries(
    st.integers(min_value=1, max_value=99).map(lambda c: c * 1000),
    st.integers(min_value=1, max_value=10_000),
    max_size=8,
)


@given(levels, levels, levels, levels)
def test_snapshot_then_deltas_equals_final_snapshot(
    yes0: dict[int, int], no0: dict[int, int], yes1: dict[int, int], no1: dict[int, int]
) -> None:
    """Applying a snapshot then the deltas between two states equals the final snapshot."""
    book = OrderBook.from_snapshot(snap(tuple(sorted(yes0.items())), tuple(sorted(no0.items()))))
    for side, before, after in ((Side.YES, yes0, yes1), (Side.NO, no0, no1)):
        for price in sorted(before.keys() | after.keys()):
            change = after.get(price, 0) - before.get(price, 0)
            if change:
                book.apply_delta(BookDelta("T", "id", side, price, change))
    final = OrderBook.from_snapshot(snap(tuple(sorted(yes1.items())), tuple(sorted(no1.items()))))
    assert book == final
