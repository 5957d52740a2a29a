"""The background batched writer: a bounded queue drained into few ``log_batch`` calls."""

from __future__ import annotations

import queue
import threading
from typing import Any

from loopml.domain.ids import new_id
from loopml.domain.tracking import MetricPoint

_STOP = object()


class BatchWriter:
    """Collects metric points and writes them in batches from one daemon thread.

    ``put`` blocks only when the queue is full (back-pressure, nothing dropped). A write
    error is kept and raised by the next ``flush``/``close``.
    """

    def __init__(self, service: Any, run_id: str, *, max_queue: int = 200_000, max_batch: int = 10_000) -> None:
        self.service = service
        self.run_id = run_id
        self.max_batch = max_batch
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name=f"loopml-writer-{run_id[-8:]}", daemon=True)
        self._thread.start()

    def put(self, point: MetricPoint) -> None:
        self._queue.put(point)

    def _drain(self) -> None:
        q = self._queue
        while True:
            item = q.get()
            batch: list[MetricPoint] = []
            stop = item is _STOP
            if not stop:
                batch.append(item)
            taken = 1
            while len(batch) < self.max_batch:
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    break
                taken += 1
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            if batch:
                try:
                    self.service.log_batch(self.run_id, metrics=batch, batch_id=new_id())
                except BaseException as exc:  # kept for the caller's flush
                    self._error = exc
            for _ in range(taken):
                q.task_done()
            if stop:
                return

    def flush(self) -> None:
        self._queue.join()
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self.flush()
