"""Demo chapter: the workspace and the content-addressed object store."""

from __future__ import annotations

from typing import Any


def run(demo: Any) -> None:
    demo.banner("workspace: SQLite metadata + local content-addressed objects")
    demo.cli("init")
    demo.cli("status")

    demo.banner("artifacts: bytes stored by content, de-duplicated, every object verified")
    from loopml import Workspace

    with Workspace.open(demo.dir) as ws:
        a = ws.objects.put_bytes(b"the same bytes")
        b = ws.objects.put_bytes(b"the same bytes")
        print(f"stored twice, kept once: {a.digest[:16]}... == {b.digest[:16]}... ({a == b})")
    demo.cli("doctor", "--verify")
