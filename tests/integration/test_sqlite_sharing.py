"""One process holding a workspace open while it opens it again and other processes write: no corruption.

SQLite's locks are POSIX locks, dropped for the whole process when *any* descriptor of the file is closed
(https://www.sqlite.org/howtocorrupt.html, 2.2). Reading the database file with a plain ``open`` while a
connection is live once let another process delete the WAL under this one; this test caught it.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from loopml.workspace import Workspace

CHILD = """
import sys
from loopml.workspace import Workspace
with Workspace.open(sys.argv[1]) as ws:
    for i in range(3):
        rid = ws.tracking.create_run("child")
        ws.tracking.end_run(rid)
"""


def test_reopening_in_one_process_while_others_write_keeps_the_database_intact(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    held = Workspace.open(tmp_path)
    held.tracking.create_run("held")  # a live pooled connection in this process
    for round_ in range(3):
        with Workspace.open(tmp_path) as again:  # opens the same file a second time
            again.tracking.search_runs()
        subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], check=True, timeout=120)
        for _ in range(20):
            held.tracking.create_run(f"held-{round_}")
    held.close()
    conn = sqlite3.connect(tmp_path / ".loopml" / "loopml.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM tracking_runs").fetchone()[0] == 1 + 3 * 20 + 3 * 3
    finally:
        conn.close()
