"""Pipelines without I/O: tracing builds the DAG from values, parameters are checked up front, cache keys."""

from __future__ import annotations

import pytest

from loopml.errors import PipelineDefinitionError
from loopml.services.pipelines.cache import (
    cache_key,
    code_fingerprint,
    explain_difference,
    key_parts,
)
from loopml.services.pipelines.dsl import Dag, Node, parse_memory, pipeline, step


@step
def load(n: int = 3) -> list[int]:
    return list(range(n))


@step
def scale(xs: list[int], factor: float = 2.0) -> list[float]:
    return [x * factor for x in xs]


@step
def combine(a: list[int], b: list[float]) -> float:
    return sum(a) + sum(b)


@pipeline
def flow(n: int = 3) -> None:
    xs = load(n)
    ys = scale(xs)
    combine(xs, ys)


def test_dag_follows_the_values_passed_between_steps() -> None:
    dag = flow.trace({"n": 5})
    assert [n.name for n in dag.topological()] == ["load", "scale", "combine"]
    assert sorted(dag.edges()) == [("load", "combine", "a"), ("load", "scale", "xs"), ("scale", "combine", "b")]
    assert dag.nodes["load"].params == {"n": 5}


def test_a_step_called_twice_gets_two_nodes() -> None:
    @pipeline
    def twice() -> None:
        combine(load(1), scale(load(2)))

    dag = twice.trace()
    assert set(dag.nodes) == {"load", "load_2", "scale", "combine"}


def test_step_parameters_can_be_overridden_by_name() -> None:
    dag = flow.trace({"scale.factor": 10})
    assert dag.nodes["scale"].params == {"factor": 10}


def test_unknown_pipeline_parameter_is_refused_before_anything_runs() -> None:
    with pytest.raises(PipelineDefinitionError, match="'m' does not match pipeline 'flow'"):
        flow.trace({"m": 1})


def test_parameter_not_in_step_signature_names_the_step() -> None:
    with pytest.raises(PipelineDefinitionError, match="'lr' does not match the signature of step 'scale'"):
        flow.trace({"scale.lr": 0.1})


def test_parameter_for_an_unknown_step_lists_the_steps() -> None:
    with pytest.raises(PipelineDefinitionError, match="does not have .*load, scale, combine"):
        flow.trace({"train.lr": 0.1})


def test_wrong_call_inside_pipeline_names_the_step() -> None:
    @pipeline
    def bad() -> None:
        scale(load(), 1.0, 3)

    with pytest.raises(PipelineDefinitionError, match="Step 'scale' is called with arguments"):
        bad.trace()


def test_missing_required_step_argument_is_reported() -> None:
    @step
    def needs(x: int, y: int) -> int:
        return x + y

    @pipeline
    def p() -> None:
        needs(1)

    with pytest.raises(PipelineDefinitionError, match="Step 'needs' is missing argument"):
        p.trace()


def test_a_cycle_is_reported_with_the_steps_in_it() -> None:
    dag = Dag("loop")
    a, b = Node("a", None, order=0), Node("b", None, order=1)
    a.inputs["x"], b.inputs["y"] = b, a
    dag.nodes = {"a": a, "b": b}
    with pytest.raises(PipelineDefinitionError, match="cycle through steps 'a', 'b'"):
        dag.topological()


def test_branching_on_a_step_output_is_explained() -> None:
    @pipeline
    def branchy() -> None:
        if load():
            pass

    with pytest.raises(PipelineDefinitionError, match="branches on the output of step 'load'"):
        branchy.trace()


def test_steps_run_as_plain_functions_outside_a_pipeline() -> None:
    assert scale([1, 2], 3) == [3, 6]


def test_memory_sizes_and_resources() -> None:
    assert parse_memory("4G") == 4e9 and parse_memory("512Mi") == 512 * 1024**2
    s = step(cpus=2, memory="4G")(lambda: 1)
    assert s.resources == {"cpus": 2.0, "memory": 4e9}
    with pytest.raises(PipelineDefinitionError, match="memory"):
        parse_memory("lots")


def _helper_v1(x: int) -> int:
    return x + 1


def _helper_v2(x: int) -> int:
    return x + 2


def _uses_v1(x: int) -> int:
    return _helper_v1(x)


def _uses_v2(x: int) -> int:
    return _helper_v2(x)


def test_cache_key_covers_helper_functions_and_params_and_inputs() -> None:
    _own, helpers, _ = code_fingerprint(_uses_v1)  # type: ignore[arg-type]
    assert any("_helper_v1" in name for name, _ in helpers)
    base = key_parts(_uses_v1, params={"a": 1}, inputs={"x": ("d1", "json@1")})  # type: ignore[arg-type]
    assert cache_key(base) == cache_key(key_parts(_uses_v1, params={"a": 1},  # type: ignore[arg-type]
                                                  inputs={"x": ("d1", "json@1")}))
    other_params = key_parts(_uses_v1, params={"a": 2}, inputs={"x": ("d1", "json@1")})  # type: ignore[arg-type]
    other_input = key_parts(_uses_v1, params={"a": 1}, inputs={"x": ("d2", "json@1")})  # type: ignore[arg-type]
    assert len({cache_key(base), cache_key(other_params), cache_key(other_input)}) == 3
    assert explain_difference(other_params, base) == ["its parameters changed: a: 1 -> 2"]
    assert explain_difference(other_input, base) == ["the content of its inputs changed: x changed"]


def test_cache_key_records_versions_of_imported_packages() -> None:
    import numpy as np

    def uses_numpy() -> object:
        return np.zeros(1)

    parts = key_parts(uses_numpy, params={}, inputs={})  # type: ignore[arg-type]
    assert parts["packages"]["numpy"] == f"numpy=={np.__version__}"
    before = {**parts, "packages": {"numpy": "numpy==1.0"}}
    assert explain_difference(parts, before) == [f"versions of packages it imports changed: numpy==1.0 -> numpy=={np.__version__}"]


def test_missing_step_argument_can_come_from_parameters() -> None:
    @step
    def needs(x: int, y: int) -> int:
        return x + y

    @pipeline
    def p() -> None:
        needs(1)

    assert p.trace({"needs.y": 2}).nodes["needs"].params == {"x": 1, "y": 2}


def test_dask_executor_without_dask_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from loopml.errors import OptionalDependencyError
    from loopml.services.pipelines.executors import make_executor

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(OptionalDependencyError, match=r"pip install 'loopml\[dask\]'"):
        make_executor("dask", None)
    with pytest.raises(PipelineDefinitionError, match="Use inline, process or dask"):
        make_executor("ray", None)



def test_parameter_values_are_checked_against_simple_annotations() -> None:
    from loopml.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="The 'n' parameter of pipeline 'flow' must be an int; got 'abc'"):
        flow.trace({"n": "abc"})
    with pytest.raises(InvalidParameterError, match="'factor' parameter of step 'scale' must be a number"):
        flow.trace({"scale.factor": "big"})
    assert flow.trace({"scale.factor": 3}).nodes["scale"].params == {"factor": 3}


def test_imports_inside_the_step_body_count_as_imported_packages() -> None:
    def local_import() -> object:
        from numpy import zeros

        return zeros(1)

    assert "numpy" in key_parts(local_import, params={}, inputs={})["packages"]  # type: ignore[arg-type]
