"""Small helpers shared by tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from loopml.workspace import Workspace


def wipe_local_objects(ws: Workspace) -> None:
    """Empty a workspace's local object store (object files and packs), as on a machine that never had them."""
    ws.objects.close()
    for child in Path(ws.objects.url).iterdir():
        if child.is_dir() and (len(child.name) == 2 or child.name == "packs"):
            shutil.rmtree(child)


def random_files(root: Path, sizes: list[int], name: str = "f{i}.bin") -> list[tuple[str, int]]:
    """Files of random bytes under ``root``, one per size, named by ``name``; returns (path, size) pairs."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i, size in enumerate(sizes):
        p = root / name.format(i=i)
        p.write_bytes(os.urandom(size))
        out.append((str(p), size))
    return out


class RecordingProgress:
    """A Progress that records each task's description, total and what was advanced."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, int | None, list[int]]] = []

    @contextmanager
    def task(self, description: str, total: int | None, *, unit: str = "items") -> Iterator[Callable[[int], None]]:
        done: list[int] = []
        self.tasks.append((description, total, done))
        yield done.append
