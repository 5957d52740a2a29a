"""Running pipelines on a real workspace: caching, explain, materializers, failures, retries, resume, timeouts."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.integration.pipelines_helpers import write_module

from loopml.domain.pipelines import StepStatus
from loopml.errors import (
    PipelineDefinitionError,
    StepFailedError,
    StepTimeoutError,
    UnmaterializableError,
)
from loopml.services.pipelines.cache import cache_key, key_parts

FLOW = """
import loopml
from loopml.sdk.pipelines import log_metrics

def helper(x):
    return x * 2

@loopml.step
def load(n: int = 4):
    print("loading", n)
    return list(range(n))

@loopml.step
def double(xs):
    return [helper(x) for x in xs]

@loopml.step
def total(xs, ys, bonus: int = 0):
    log_metrics(total=sum(ys))
    return {"sum": sum(xs) + sum(ys) + bonus}

@loopml.pipeline
def flow(n: int = 4):
    xs = load(n)
    total(xs, double(xs))
"""


def statuses(run: Any) -> dict[str, str]:
    return {s.name: str(s.status) for s in run.steps}


def test_second_run_is_fully_cached_and_explain_says_why(workspace: Any, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", FLOW)
    first = workspace.pipelines.run(f"{mod}:flow")
    assert statuses(first) == {"load": "FINISHED", "double": "FINISHED", "total": "FINISHED"}
    loaded = next(s for s in first.steps if s.name == "load")
    assert loaded.stdout == "loading 4\n"
    assert next(s for s in first.steps if s.name == "total").metrics == {"total": 12.0}
    second = workspace.pipelines.run(f"{mod}:flow")
    assert set(statuses(second).values()) == {"CACHED"}
    assert [s.output_digest for s in second.steps] == [s.output_digest for s in first.steps]
    assert "cached" in workspace.pipelines.explain(second.id, "total")[0]
    third = workspace.pipelines.run(f"{mod}:flow", params={"n": 5, "total.bonus": 1})
    assert statuses(third) == {"load": "FINISHED", "double": "FINISHED", "total": "FINISHED"}
    why = "\n".join(workspace.pipelines.explain(third.id, "load"))
    assert "parameters changed: n: 4 -> 5" in why
    why = "\n".join(workspace.pipelines.explain(third.id, "double"))
    assert "content of its inputs changed: xs" in why


def test_same_input_content_hits_the_cache_even_from_a_different_upstream(workspace: Any, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", FLOW)
    workspace.pipelines.run(f"{mod}:flow", params={"n": 3})
    # load's param changes, but double's input content ([0, 1, 2]) is the same => double is cached.
    run = workspace.pipelines.run(f"{mod}:flow", params={"n": 3, "load.n": 3})
    assert statuses(run)["double"] == "CACHED"


def test_changing_a_helper_function_invalidates_the_steps_that_call_it(workspace: Any, tmp_path: Path) -> None:
    d = tmp_path / "proj"
    mod = write_module(d, FLOW)
    workspace.pipelines.run(f"{mod}:flow")
    mod2 = write_module(d, FLOW.replace("x * 2", "x * 3"))
    # same step names and pipeline name; only the helper changed
    run = workspace.pipelines.run(f"{mod2}:flow")
    assert statuses(run) == {"load": "CACHED", "double": "FINISHED", "total": "FINISHED"}
    why = "\n".join(workspace.pipelines.explain(run.id, "double"))
    assert "source of project functions it calls changed" in why and "helper" in why


def test_no_cache_and_cache_false(workspace: Any, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", FLOW.replace("@loopml.step\ndef double", "@loopml.step(cache=False)\ndef double"))
    workspace.pipelines.run(f"{mod}:flow")
    run = workspace.pipelines.run(f"{mod}:flow")
    assert statuses(run) == {"load": "CACHED", "double": "FINISHED", "total": "CACHED"}
    assert "cache=False" in "\n".join(workspace.pipelines.explain(run.id, "double"))
    run = workspace.pipelines.run(f"{mod}:flow", no_cache=True)
    assert set(statuses(run).values()) == {"FINISHED"}
    assert "--no-cache" in "\n".join(workspace.pipelines.explain(run.id, "load"))


MATERIALS = """
import json
from pathlib import Path
import numpy as np
import pandas as pd
import loopml
from sklearn.linear_model import LogisticRegression
from loopml.sdk.pipelines import register_materializer

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

register_materializer("point.json", accepts=Point,
                      save=lambda p, path: path.write_text(json.dumps([p.x, p.y])),
                      load=lambda path: Point(*json.loads(path.read_text())))

class Opaque:
    def __init__(self, v):
        self.v = v

@loopml.step
def frame():
    return pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5]})

@loopml.step
def array(df):
    return df.to_numpy()

@loopml.step
def model(df, arr):
    return LogisticRegression().fit(arr, [0, 1, 1])

@loopml.step
def folder(df, out: str):
    d = Path(out)
    (d / "sub").mkdir(parents=True, exist_ok=True)
    (d / "sub" / "data.csv").write_text(df.to_csv())
    return d

@loopml.step
def point():
    return Point(1, 2)

@loopml.step
def opaque():
    return Opaque(3)

@loopml.step
def check(df, arr, m, d, p, o):
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["a", "b"]
    assert isinstance(arr, np.ndarray) and arr.shape == (3, 2)
    assert list(m.predict(arr)) == list(m.predict(arr))
    assert (d / "sub" / "data.csv").read_text().startswith(",a,b")
    assert (p.x, p.y) == (1, 2) and o.v == 3
    return {"ok": True}

@loopml.pipeline
def mats(out: str):
    df = frame()
    arr = array(df)
    check(df, arr, model(df, arr), folder(df, out), point(), opaque())
"""


def test_materializers_round_trip_each_kind_and_warn_on_fallback(workspace: Any, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", MATERIALS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = workspace.pipelines.run(f"{mod}:mats", params={"out": str(tmp_path / "outdir")})
    by = {s.name: s for s in run.steps}
    assert by["check"].status == StepStatus.FINISHED
    assert by["frame"].materializer == "pandas.parquet@1" and by["array"].materializer == "numpy.npy@1"
    assert by["model"].materializer == "sklearn.pickle@1" and by["folder"].materializer == "path.tar@1"
    assert by["point"].materializer == "point.json@1" and by["opaque"].materializer == "pickle@1"
    assert any("Opaque" in str(w.message) and "pickle" in str(w.message) for w in caught)
    # the parquet object is a real Parquet file in the content store
    path = workspace.objects.local_path(by["frame"].output_digest)
    assert pd.read_parquet(path)["a"].tolist() == [1, 2, 3]
    assert np.load(workspace.objects.local_path(by["array"].output_digest)).shape == (3, 2)


BAD = """
import os, time, threading
import loopml

@loopml.step(retries=2, retry_backoff=0.01)
def flaky(marker: str):
    n = int(open(marker).read()) if os.path.exists(marker) else 0
    with open(marker, "w") as fh:
        fh.write(str(n + 1))
    if n < 2:
        raise RuntimeError(f"flaky failure {n + 1}")
    return n + 1

@loopml.step
def boom(x, fail: bool = True):
    print("about to fail with", x)
    if fail:
        raise ValueError("bad value in boom")
    return x + 1

@loopml.step
def side(x):
    return x * 10

@loopml.pipeline
def failing(marker: str, fail: bool = True):
    x = flaky(marker)
    side(x)
    boom(x, fail=fail)

@loopml.step(timeout=0.3)
def hang():
    time.sleep(20)

@loopml.pipeline
def hanging():
    hang()

@loopml.step
def lock():
    return threading.Lock()

@loopml.pipeline
def unstorable():
    lock()
"""


def test_failing_step_shows_its_error_and_output_and_resume_reuses_finished_steps(
    workspace: Any, tmp_path: Path
) -> None:
    mod = write_module(tmp_path / "proj", BAD)
    marker = str(tmp_path / "marker")
    with pytest.raises(StepFailedError) as info:
        workspace.pipelines.run(f"{mod}:failing", params={"marker": marker})
    err = info.value
    text = str(err)
    assert err.step == "boom" and "Step 'boom' failed" in text
    assert "ValueError: bad value in boom" in text and "about to fail with 3" in text
    assert "loopml/services" not in text  # the user's frames only
    assert f"loopml pipeline resume {err.run_id[-8:]}" in text  # type: ignore[attr-defined]
    failed = workspace.pipelines.get_run(err.run_id)  # type: ignore[attr-defined]
    by = {s.name: s for s in failed.steps}
    assert failed.status == "FAILED" and by["flaky"].attempts == 3 and by["boom"].status == StepStatus.FAILED
    # retries happened: the marker counted three attempts
    assert Path(marker).read_text() == "3"
    # the user fixes the input; resume reruns only the failed step
    workspace.pipelines.run  # noqa: B018
    with pytest.raises(StepFailedError):
        workspace.pipelines.resume(err.run_id[-8:])  # type: ignore[attr-defined]
    resumed = workspace.pipelines.run(f"{mod}:failing", params={"marker": marker, "fail": False},
                                      resume_from=err.run_id)  # type: ignore[attr-defined]
    assert statuses(resumed) == {"flaky": "REUSED", "side": "REUSED", "boom": "FINISHED"}
    assert Path(marker).read_text() == "3"  # flaky did not run again


def test_step_past_its_timeout_fails_naming_the_step(workspace: Any, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", BAD)
    t = time.time()
    with pytest.raises(StepTimeoutError, match="'hang' did not finish within its timeout of 0.3 s"):
        workspace.pipelines.run(f"{mod}:hanging")
    assert time.time() - t < 5


def test_unstorable_return_value_names_the_step(workspace: Any, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", BAD)
    with pytest.raises(UnmaterializableError, match="step 'lock' returned a _thread.lock"):
        workspace.pipelines.run(f"{mod}:unstorable")


def test_missing_module_or_function_is_a_clear_error(workspace: Any, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", FLOW)
    with pytest.raises(PipelineDefinitionError, match="module 'no_such_mod' .* cannot be found"):
        workspace.pipelines.run("no_such_mod:flow")
    with pytest.raises(PipelineDefinitionError, match="has no function 'nope'"):
        workspace.pipelines.run(f"{mod}:nope")
    with pytest.raises(PipelineDefinitionError, match="must be given as module:function"):
        workspace.pipelines.run("justaname")


def test_bad_params_fail_before_any_run_is_recorded(workspace: Any, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", FLOW)
    with pytest.raises(PipelineDefinitionError, match="'lr' does not match the signature of step 'total'"):
        workspace.pipelines.run(f"{mod}:flow", params={"total": {"lr": 1}})
    assert workspace.pipelines.list_runs() == []


def test_yaml_params_file_and_cli_pairs(tmp_path: Path) -> None:
    from loopml.services.pipelines import load_params_file, parse_param_pairs

    f = tmp_path / "p.yaml"
    f.write_text("n: 3\ntotal:\n  bonus: 2\n")
    assert load_params_file(f) == {"n": 3, "total": {"bonus": 2}}
    assert parse_param_pairs(["n=3", "total.bonus=2.5", "name=abc", "flag=true"]) == {
        "n": 3, "total.bonus": 2.5, "name": "abc", "flag": True}
    with pytest.raises(PipelineDefinitionError, match="NAME=VALUE"):
        parse_param_pairs(["oops"])


def test_process_executor_runs_independent_steps_at_once(workspace: Any, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", """
        import os, time
        import loopml

        @loopml.step
        def nap(i: int):
            time.sleep(1.0)
            return os.getpid()

        @loopml.step
        def pids(a, b):
            return [a, b]

        @loopml.pipeline
        def par():
            pids(nap(1), nap(2))
    """)
    t = time.time()
    run = workspace.pipelines.run(f"{mod}:par", executor="process", workers=2)
    elapsed = time.time() - t
    by = {s.name: s for s in run.steps}
    assert by["pids"].status == StepStatus.FINISHED
    value = workspace.objects.read_bytes(by["pids"].output_digest)
    a, b = __import__("json").loads(value)
    assert a != b and os_pid() not in (a, b)  # two different worker processes
    assert elapsed < 1.0 * 2 + 1.5  # the naps overlapped (spawn start-up included)


def os_pid() -> int:
    import os

    return os.getpid()


def _plain(p: object) -> object:
    return p


def test_a_path_parameter_puts_the_file_content_into_the_key(tmp_path: Path) -> None:
    f = Path(tmp_path) / "data.csv"
    f.write_text("a\n1\n")
    one = cache_key(key_parts(_plain, params={"p": f}, inputs={}))  # type: ignore[arg-type]
    assert one == cache_key(key_parts(_plain, params={"p": f}, inputs={}))  # type: ignore[arg-type]
    f.write_text("a\n2\n")
    assert one != cache_key(key_parts(_plain, params={"p": f}, inputs={}))  # type: ignore[arg-type]


def test_a_step_that_stops_its_whole_worker_is_killed_at_its_timeout(workspace: Any, tmp_path: Path) -> None:
    mod = write_module(tmp_path / "proj", """
        import os, signal
        import loopml

        @loopml.step(timeout=0.5)
        def freeze():
            os.kill(os.getpid(), signal.SIGSTOP)  # the worker process itself stops: no thread can time out

        @loopml.pipeline
        def frozen():
            freeze()
    """)
    t = time.time()
    with pytest.raises(StepTimeoutError, match="'freeze' did not finish within its timeout of 0.5 s; its worker was stopped"):
        workspace.pipelines.run(f"{mod}:frozen", executor="process", workers=1)
    assert time.time() - t < 10
