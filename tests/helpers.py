"""Small helpers shared by tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from loopml.workspace import Workspace


def wipe_local_objects(ws: Workspace) -> None:
    """Empty a workspace's local object store (object files and packs), as on a machine that never had them."""
    ws.objects.close()
    for child in Path(ws.objects.url).iterdir():
        if child.is_dir() and (len(child.name) == 2 or child.name == "packs"):
            shutil.rmtree(child)
