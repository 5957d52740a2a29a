"""The audit trail on SQLite and PostgreSQL: every part's actions are read back, filtered and ordered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loopml.errors import InvalidParameterError


@pytest.fixture
def workspace(tmp_path: Path, db_url: str) -> Any:
    from loopml.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", db_url=db_url)
    yield ws
    ws.close()


def test_actions_of_every_part_are_recorded_and_filterable(workspace: Any) -> None:
    version = workspace.data.save_table(pd.DataFrame({"a": [1, 2]}), "t")
    run_id = workspace.tracking.create_run("audit")
    workspace.tracking.end_run(run_id)
    everything = workspace.events(limit=None, newest_first=False)
    actions = [e.action for e in everything]
    assert actions.index("run.create") < actions.index("run.end")
    assert all(e.actor and e.id and e.ts > 0 for e in everything)
    mine = workspace.events(object_type="run", object_id=run_id)
    assert [e.action for e in mine] == ["run.end", "run.create"]  # newest first
    assert [e.action for e in workspace.events(action="run.*", newest_first=False)] == ["run.create", "run.end"]
    assert len(workspace.events(limit=1)) == 1
    created = workspace.events(action="dataset.version_created")
    assert [e.object_id for e in created] == [version.id]
    assert workspace.events(action="no.such*") == []
    assert workspace.events(action="run_%") == []  # LIKE wildcards in the filter are literal
    with pytest.raises(InvalidParameterError):
        workspace.events(limit=0)


def test_events_cli(tmp_path: Path) -> None:
    def loopml(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "loopml", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    assert loopml("init").returncode == 0
    (tmp_path / "f.txt").write_text("x\n")
    assert loopml("data", "add", "f.txt", "--name", "f").returncode == 0
    r = loopml("events", "--json")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert found and all({"id", "ts", "actor", "action", "object_type", "object_id"} <= set(e) for e in found)
    r = loopml("events")
    assert r.returncode == 0 and "event(s)" in r.stdout
