"""Micro-batching, in process: concurrent requests share forward passes and each gets its own rows."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import numpy.typing as npt
import pytest

from promoter.serving.batching import BatcherStopped, MicroBatcher


class Recorder:
    """A forward pass that doubles its input, remembers the batch sizes, and can be held or broken."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()  # set once a forward pass has begun
        self.broken = False

    def __call__(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.entered.set()
        self.release.wait(10)
        self.batches.append(len(inputs))
        if self.broken:
            raise RuntimeError("the forward pass broke")
        return inputs * 2


def rows(start: int, count: int) -> npt.NDArray[np.float32]:
    return np.arange(start, start + count, dtype=np.float32).reshape(count, 1)


def test_requests_that_wait_together_share_a_forward_pass_and_get_their_own_rows() -> None:
    forward = Recorder()
    observed: list[tuple[int, float]] = []

    async def scenario() -> list[npt.NDArray[np.float32]]:
        batcher = MicroBatcher(forward, 256, 0.0, lambda i, o, s: observed.append((len(i), s)))
        batcher.start()
        forward.release.clear()  # the first request holds the forward thread: the rest queue up
        first = asyncio.ensure_future(batcher.predict(rows(0, 1)))
        await asyncio.to_thread(forward.entered.wait, 10)
        rest = [asyncio.ensure_future(batcher.predict(rows(10 * i, i))) for i in range(1, 6)]
        await asyncio.sleep(0)  # each task queues its request before its first await
        forward.release.set()
        answers = await asyncio.gather(first, *rest)
        await batcher.stop()
        return answers

    answers = asyncio.run(scenario())
    assert forward.batches == [1, 15]  # the five waiting requests became one batch of 1+2+3+4+5 rows
    assert [size for size, _ in observed] == [1, 15]
    np.testing.assert_array_equal(answers[0], rows(0, 1) * 2)
    for i, answer in enumerate(answers[1:], start=1):
        np.testing.assert_array_equal(answer, rows(10 * i, i) * 2)


def test_a_batch_never_grows_past_the_limit_unless_one_request_is_larger() -> None:
    forward = Recorder()

    async def scenario() -> None:
        batcher = MicroBatcher(forward, 4)
        batcher.start()
        forward.release.clear()  # a first request holds the forward thread while five more queue up
        first = asyncio.ensure_future(batcher.predict(rows(0, 1)))
        await asyncio.to_thread(forward.entered.wait, 10)
        waiting = [asyncio.ensure_future(batcher.predict(rows(0, n))) for n in (1, 3, 2, 2, 6)]
        await asyncio.sleep(0)  # each task queues its request before its first await
        forward.release.set()
        await asyncio.gather(first, *waiting)
        await batcher.stop()

    asyncio.run(scenario())
    assert forward.batches == [1, 4, 4, 6]  # 1+3 and 2+2 reach the limit; the 6-row request goes alone


def test_a_failed_forward_pass_fails_its_requests_only() -> None:
    forward = Recorder()

    async def scenario() -> npt.NDArray[np.float32]:
        batcher = MicroBatcher(forward)
        batcher.start()
        forward.broken = True
        with pytest.raises(RuntimeError, match="the forward pass broke"):
            await batcher.predict(rows(0, 2))
        forward.broken = False
        answer = await batcher.predict(rows(5, 1))
        await batcher.stop()
        return answer

    np.testing.assert_array_equal(asyncio.run(scenario()), rows(5, 1) * 2)


def test_stopping_answers_everything_already_queued_then_refuses() -> None:
    forward = Recorder()

    async def scenario() -> list[npt.NDArray[np.float32]]:
        batcher = MicroBatcher(forward)
        batcher.start()
        forward.release.clear()
        queued = [asyncio.ensure_future(batcher.predict(rows(i, 1))) for i in range(3)]
        await asyncio.to_thread(forward.entered.wait, 10)
        stopping = asyncio.ensure_future(batcher.stop())
        await asyncio.sleep(0)  # stop() marks the batcher stopping before its first await
        with pytest.raises(BatcherStopped, match="shutting down"):
            await batcher.predict(rows(9, 1))
        forward.release.set()
        await stopping
        return await asyncio.gather(*queued)

    answers = asyncio.run(scenario())
    assert [float(a[0, 0]) for a in answers] == [0.0, 2.0, 4.0]
