"""Dynamic micro-batching: concurrent requests share one forward pass.

One forward pass runs at a time on a dedicated thread (torch releases the GIL, so the event loop
keeps accepting requests). Whatever queued up meanwhile becomes the next batch, so batches grow with
load by themselves; `max_wait` can additionally hold a small batch back briefly to gather more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Forward = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


@dataclass
class _Pending:
    inputs: npt.NDArray[np.float32]
    future: asyncio.Future[npt.NDArray[np.float32]]


class BatcherStopped(RuntimeError):
    pass


class MicroBatcher:
    def __init__(
        self,
        forward: Forward,
        max_batch_size: int = 256,
        max_wait_seconds: float = 0.0,
        on_batch: Callable[[npt.NDArray[np.float32], npt.NDArray[np.float32], float], None] | None = None,
    ) -> None:
        self._forward = forward
        self._max_batch_size = max_batch_size
        self._max_wait = max_wait_seconds
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Finish everything already submitted, then stop (graceful shutdown relies on this)."""
        self._stopping = True
        await self._queue.put(None)
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def predict(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self._stopping:
            raise BatcherStopped("the server is shutting down")
        future: asyncio.Future[npt.NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(inputs, future))
        return await future

    async def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch, rows, stop = [first], len(first.inputs), False
        deadline = time.monotonic() + self._max_wait
        while rows < self._max_batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if item is None:
                stop = True
                break
            batch.append(item)
            rows += len(item.inputs)
        return batch, stop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            batch, stop = await self._collect(first)
            inputs = batch[0].inputs if len(batch) == 1 else np.concatenate([p.inputs for p in batch])
            started = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self._executor, self._forward, inputs)
            except Exception as exc:  # delivered to each waiting request, never kills the loop
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            if self._on_batch is not None:
                self._on_batch(inputs, outputs, time.perf_counter() - started)
            offset = 0
            for pending in batch:
                size = len(pending.inputs)
                if not pending.future.done():  # the client may have gone away
                    pending.future.set_result(outputs[offset : offset + size])
                offset += size
