"""The one retry policy (kalshi.retry): bounded tries over named transient errors, delays
with jitter in virtual time."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from kalshi.errors import HttpError
from kalshi.retry import Backoff, retry


def test_backoff_doubles_to_its_maximum_with_jitter_in_the_upper_half() -> None:
    backoff = Backoff(0.5, 3.0, random.Random(7))
    draws = random.Random(7)
    for cap in (0.5, 1.0, 2.0, 3.0, 3.0):
        assert backoff.next() == cap / 2 + draws.random() * cap / 2
    backoff.reset()
    assert backoff.ceiling() == 0.5


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (2.0, 1.0)])
def test_backoff_refuses_a_schedule_that_cannot_work(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="0 < initial <= maximum"):
        Backoff(initial, maximum)


async def test_transient_errors_are_retried_until_the_call_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tries: list[float] = []
    failures: list[tuple[str, int]] = []

    async def flaky() -> str:
        tries.append(trio.current_time())
        if len(tries) < 3:
            raise ConnectionError(f"down {len(tries)}")
        return "up"

    got = await retry(
        flaky,
        transient=(ConnectionError,),
        attempts=5,
        initial=1.0,
        maximum=10.0,
        on_failure=lambda exc, attempt: failures.append((str(exc), attempt)),
        rng=random.Random(3),
    )
    draws = random.Random(3)
    first, second = 0.5 + draws.random() * 0.5, 1.0 + draws.random() * 1.0
    assert got == "up"
    assert failures == [("down 1", 1), ("down 2", 2)]
    assert tries == [0.0, first, first + second]


async def test_the_last_transient_error_is_raised_after_all_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    failures: list[int] = []

    async def down() -> None:
        raise TimeoutError(f"try {len(failures) + 1}")

    with pytest.raises(TimeoutError, match=r"^try 4$"):
        await retry(
            down,
            transient=(OSError,),
            attempts=4,
            on_failure=lambda exc, attempt: failures.append(attempt),
        )
    assert failures == [1, 2, 3, 4]


async def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    async def broken() -> None:
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await retry(broken, transient=(OSError,), attempts=8)
    assert calls == [1]


async def test_at_least_one_attempt() -> None:
    async def never() -> None:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="attempts >= 1, got 0"):
        await retry(never, transient=(OSError,), attempts=0)


async def test_a_predicate_names_the_transient_errors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    statuses = [503, 502, 404]

    async def answer() -> None:
        status = statuses.pop(0)
        raise HttpError(status, "GET /x")

    failures: list[tuple[int, int]] = []

    def failed(exc: BaseException, attempt: int) -> None:
        assert isinstance(exc, HttpError)
        failures.append((exc.status, attempt))

    with pytest.raises(HttpError, match=r"^HTTP 404: GET /x$"):
        await retry(
            answer,
            transient=lambda exc: isinstance(exc, HttpError) and exc.status >= 500,
            attempts=8,
            on_failure=failed,
        )
    assert failures == [(503, 1), (502, 2)]
    assert statuses == []


async def test_cancellation_is_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[float] = []

    async def hangs() -> None:
        calls.append(trio.current_time())
        await trio.sleep_forever()

    with trio.move_on_after(5) as scope:
        await retry(hangs, transient=(BaseException,), attempts=8)
    assert scope.cancelled_caught
    assert calls == [0.0]
