"""The background batched writer: a bounded buffer drained into few ``log_batch`` calls."""

from __future__ import annotations

import threading
from typing import Any

from loopml.domain.ids import new_id
from loopml.domain.tracking import MetricPoint


class BatchWriter:
    """Collects metric points and writes them in batches, in the background and at flush.

    ``put`` only appends to a buffer. A daemon thread writes the buffer when it holds
    ``max_batch`` points or every ``interval`` seconds; ``flush``/``close`` write the rest in
    the caller's thread, so once they return everything put before is in the database.
    When the buffer reaches ``max_queue`` points (the database is slower than the caller),
    ``put`` writes it itself: back-pressure, nothing dropped. A failed write keeps its points
    (the next write retries them); a background write error is raised by the next
    ``flush``/``close``.
    """

    def __init__(self, service: Any, run_id: str, *, max_queue: int = 200_000, max_batch: int = 10_000,
                 interval: float = 0.5) -> None:
        self.service = service
        self.run_id = run_id
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.interval = interval
        self._buf: list[MetricPoint] = []
        self._lock = threading.Lock()  # guards _buf; held only to append or swap
        self._io = threading.Lock()  # one write at a time, so batches land in the order they were put
        self._wake = threading.Event()
        self._closed = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def put(self, point: MetricPoint) -> None:
        with self._lock:
            buf = self._buf
            buf.append(point)
            n = len(buf)
        if n == 1 and self._thread is None:
            self._start()
        elif n >= self.max_batch:
            if n >= self.max_queue:
                self._write_pending(raise_errors=True)
            else:
                self._wake.set()

    def _start(self) -> None:
        # Started at the first point, not per run: runs that log nothing cost no thread.
        t = threading.Thread(target=self._drain, name=f"loopml-writer-{self.run_id[-8:]}", daemon=True)
        self._thread = t
        t.start()

    def _take(self) -> list[MetricPoint]:
        with self._lock:
            batch, self._buf = self._buf, []
        return batch

    def _write_pending(self, *, raise_errors: bool) -> None:
        with self._io:
            batch = self._take()
            for i in range(0, len(batch), self.max_batch):
                try:
                    self.service.log_batch(self.run_id, metrics=batch[i:i + self.max_batch], batch_id=new_id())
                except BaseException as exc:
                    with self._lock:  # what was not written goes back first, in order: a later flush retries it
                        self._buf[:0] = batch[i:]
                    if raise_errors:
                        raise
                    self._error = exc  # kept for the caller's flush
                    return

    def _drain(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._closed:
                return
            if self._buf:
                self._write_pending(raise_errors=False)

    def flush(self) -> None:
        self._write_pending(raise_errors=True)
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def close(self) -> None:
        self._closed = True
        t = self._thread
        if t is not None and t.is_alive():
            self._wake.set()
            t.join()
        self.flush()
