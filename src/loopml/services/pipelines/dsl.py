"""The @step/@pipeline decorators and the DAG built by tracing a pipeline function."""

from __future__ import annotations

import contextvars
import functools
import importlib
import inspect
import os
import re
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopml.errors import InvalidParameterError, PipelineDefinitionError

_MEMORY_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "KI": 1024, "MI": 1024**2, "GI": 1024**3}

_tracer: contextvars.ContextVar[Dag | None] = contextvars.ContextVar("loopml_pipeline_tracer", default=None)


def parse_memory(value: str | float | int | None) -> float | None:
    """'4G' -> 4e9; numbers are bytes."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]i?)?B?\s*", str(value), re.IGNORECASE)
    if not m:
        raise PipelineDefinitionError(
            f"The 'memory' of a step must look like '512M' or '4G'; got {value!r}."
        )
    return float(m.group(1)) * _MEMORY_UNITS[(m.group(2) or "").upper()]


class Step:
    """A plain Python function declared as a pipeline step.

    Called inside a ``@pipeline`` function it records a node and returns a placeholder;
    called anywhere else it simply runs the function.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        cache: bool = True,
        retries: int = 0,
        retry_backoff: float = 1.0,
        timeout: float | None = None,
        cpus: float | None = None,
        memory: str | float | None = None,
        materializer: str | None = None,
    ) -> None:
        self.func = func
        self.name = name or func.__name__
        self.cache = cache
        self.retries = int(retries)
        self.retry_backoff = float(retry_backoff)
        self.timeout = timeout
        self.cpus = cpus
        self.memory = parse_memory(memory)
        self.materializer = materializer
        self.signature = inspect.signature(func)
        functools.update_wrapper(self, func)

    @property
    def ref(self) -> str:
        """``module:qualname``, how workers import the function."""
        return f"{self.func.__module__}:{self.func.__qualname__}"

    @property
    def resources(self) -> dict[str, float]:
        res: dict[str, float] = {}
        if self.cpus:
            res["cpus"] = float(self.cpus)
        if self.memory:
            res["memory"] = float(self.memory)
        return res

    def __repr__(self) -> str:
        return f"<loopml step {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        dag = _tracer.get()
        if dag is None:
            return self.func(*args, **kwargs)
        return dag.add_call(self, args, kwargs)


class StepOutput:
    """The placeholder a step call returns while a pipeline is traced: an edge of the DAG."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def __repr__(self) -> str:
        return f"<output of step {self.node.name}>"

    def __bool__(self) -> bool:
        raise PipelineDefinitionError(
            f"The pipeline branches on the output of step {self.node.name!r}, which is not known "
            "until the pipeline runs.",
            hint="Branch inside a step instead, or pass the decision as a parameter.",
        )

    def __iter__(self) -> Iterator[Any]:
        raise PipelineDefinitionError(
            f"The pipeline unpacks or iterates the output of step {self.node.name!r}; a step has one output.",
            hint="Return one value (a dict, a tuple) and split it in the next step.",
        )


@dataclass
class DatasetSource:
    """A dataset version as pipeline input, resolved through the data part when the run starts."""

    ref: str


@dataclass
class Node:
    """One step call in a pipeline: upstream edges by argument, constants by argument."""

    name: str
    step: Step | None
    inputs: dict[str, Node] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    dataset: DatasetSource | None = None
    order: int = 0

    @property
    def upstream(self) -> list[Node]:
        return list(self.inputs.values())

    @property
    def func_ref(self) -> str:
        return self.step.ref if self.step else f"dataset:{self.dataset.ref if self.dataset else ''}"


class Dag:
    """The nodes of a traced pipeline in call order, plus validation and topological order."""

    def __init__(self, pipeline_name: str) -> None:
        self.pipeline_name = pipeline_name
        self.nodes: dict[str, Node] = {}

    def _unique_name(self, base: str) -> str:
        if base not in self.nodes:
            return base
        i = 2
        while f"{base}_{i}" in self.nodes:
            i += 1
        return f"{base}_{i}"

    def add_dataset(self, ref: str) -> StepOutput:
        node = Node(self._unique_name(f"dataset:{ref.split('@', 1)[0]}"), None, dataset=DatasetSource(ref),
                    order=len(self.nodes))
        self.nodes[node.name] = node
        return StepOutput(node)

    def add_call(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepOutput:
        name = self._unique_name(step.name)
        try:
            bound = step.signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise PipelineDefinitionError(
                f"Step {name!r} is called with arguments that do not match its signature "
                f"{step.name}{step.signature}: {exc}.",
                hint="Fix the call in the pipeline function.",
            ) from exc
        node = Node(name, step, order=len(self.nodes))
        for arg, value in bound.arguments.items():
            kind = step.signature.parameters[arg].kind
            if kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise PipelineDefinitionError(
                    f"Step {name!r} takes *{arg}; steps need named arguments so the DAG can be traced.",
                )
            if isinstance(value, StepOutput):
                node.inputs[arg] = value.node
            elif _contains_output(value):
                raise PipelineDefinitionError(
                    f"Step {name!r} gets a step output nested inside argument {arg!r}.",
                    hint="Pass each step output as its own argument.",
                )
            else:
                node.params[arg] = value
        self.nodes[name] = node
        return StepOutput(node)

    def topological(self) -> list[Node]:
        """Nodes in an order where every node follows its inputs; raises on a cycle."""
        indeg = {name: 0 for name in self.nodes}
        down: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in self.nodes.values():
            for up in node.upstream:
                if up.name not in self.nodes:
                    raise PipelineDefinitionError(
                        f"Step {node.name!r} uses the output of {up.name!r}, which is not part of "
                        f"pipeline {self.pipeline_name!r}."
                    )
                indeg[node.name] += 1
                down[up.name].append(node.name)
        ready = sorted((n for n, d in indeg.items() if d == 0), key=lambda n: self.nodes[n].order)
        out: list[Node] = []
        while ready:
            name = ready.pop(0)
            out.append(self.nodes[name])
            for child in down[name]:
                indeg[child] -= 1
                if indeg[child] == 0:
                    ready.append(child)
        if len(out) != len(self.nodes):
            stuck = sorted(n for n, d in indeg.items() if d > 0)
            raise PipelineDefinitionError(
                f"Pipeline {self.pipeline_name!r} has a cycle through steps {', '.join(map(repr, stuck))}.",
                hint="A step cannot depend, directly or indirectly, on its own output.",
            )
        return out

    def downstream(self) -> dict[str, list[str]]:
        down: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in self.nodes.values():
            for up in node.upstream:
                down[up.name].append(node.name)
        return down

    def edges(self) -> list[tuple[str, str, str]]:
        """(upstream, downstream, argument)."""
        return [(up.name, node.name, arg) for node in self.nodes.values() for arg, up in node.inputs.items()]


_SIMPLE = {int: "an int", float: "a number", str: "a string", bool: "true or false"}


def _checked(where: str, func: Callable[..., Any], arg: str, value: Any) -> Any:
    """Check a user-supplied parameter against a simple annotation; a str for a Path becomes a Path."""
    try:
        ann = typing.get_type_hints(func).get(arg)
    except Exception:  # unresolvable annotations are not checked
        return value
    if ann is Path and isinstance(value, str):
        return Path(value)
    if ann in _SIMPLE:
        ok = isinstance(value, ann) and not (ann is int and isinstance(value, bool))
        if ann is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise InvalidParameterError(arg, where, _SIMPLE[ann], value)
    return value


def _contains_output(value: Any) -> bool:
    if isinstance(value, StepOutput):
        return True
    if isinstance(value, list | tuple | set):
        return any(_contains_output(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_output(v) for v in value.values())
    return False


class Pipeline:
    """A function that calls steps; tracing it with parameters gives the DAG."""

    def __init__(self, func: Callable[..., Any], *, name: str | None = None) -> None:
        self.func = func
        self.name = name or func.__name__
        self.signature = inspect.signature(func)
        functools.update_wrapper(self, func)

    @property
    def ref(self) -> str:
        return f"{self.func.__module__}:{self.func.__qualname__}"

    def __repr__(self) -> str:
        return f"<loopml pipeline {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling a pipeline runs it in the nearest workspace, in-process."""
        from loopml.sdk.pipelines import run_pipeline

        if args:
            raise PipelineDefinitionError(
                f"Pipeline {self.name!r} takes its parameters as keywords; got positional arguments."
            )
        return run_pipeline(self, params=kwargs)

    def trace(self, params: Mapping[str, Any] | None = None) -> Dag:
        """Build the DAG; ``params`` holds pipeline arguments and ``step.arg`` overrides."""
        params = dict(params or {})
        pipe_args: dict[str, Any] = {}
        overrides: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            if "." in key:
                step_name, arg = key.split(".", 1)
                overrides.setdefault(step_name, {})[arg] = value
            else:
                pipe_args[key] = value
        accepts_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in self.signature.parameters.values())
        for key in pipe_args:
            if key not in self.signature.parameters and not accepts_kwargs:
                known = ", ".join(p for p in self.signature.parameters) or "none"
                raise PipelineDefinitionError(
                    f"Parameter {key!r} does not match pipeline {self.name!r} (its parameters: {known}).",
                    hint="Use NAME=VALUE for a pipeline parameter or STEP.ARG=VALUE for a step argument.",
                )
        try:
            self.signature.bind(**pipe_args)
        except TypeError as exc:
            raise PipelineDefinitionError(
                f"Pipeline {self.name!r} cannot be called with parameters {sorted(pipe_args)}: {exc}.",
                hint="Pass the missing ones with -p NAME=VALUE or in the parameters file.",
            ) from exc
        pipe_args = {k: _checked(f"pipeline {self.name!r}", self.func, k, v) for k, v in pipe_args.items()}
        dag = Dag(self.name)
        token = _tracer.set(dag)
        try:
            self.func(**pipe_args)
        finally:
            _tracer.reset(token)
        if not dag.nodes:
            raise PipelineDefinitionError(f"Pipeline {self.name!r} calls no steps.",
                                          hint="Decorate the functions it calls with @loopml.step.")
        for step_name, args in overrides.items():
            node = dag.nodes.get(step_name)
            if node is None or node.step is None:
                raise PipelineDefinitionError(
                    f"Parameter {step_name}.{next(iter(args))} names step {step_name!r}, which pipeline "
                    f"{self.name!r} does not have (steps: {', '.join(dag.nodes)}).",
                )
            for arg, value in args.items():
                if arg not in node.step.signature.parameters:
                    raise PipelineDefinitionError(
                        f"Parameter {arg!r} does not match the signature of step {step_name!r}: "
                        f"{node.step.name}{node.step.signature}.",
                        hint="Check the spelling against the step function's arguments.",
                    )
                if arg in node.inputs:
                    raise PipelineDefinitionError(
                        f"Argument {arg!r} of step {step_name!r} is the output of step "
                        f"{node.inputs[arg].name!r}; it cannot be set as a parameter."
                    )
                node.params[arg] = _checked(f"step {step_name!r}", node.step.func, arg, value)
        for node in dag.nodes.values():
            if node.step is None:
                continue
            missing = [
                p.name for p in node.step.signature.parameters.values()
                if p.default is inspect.Parameter.empty and p.name not in node.params and p.name not in node.inputs
            ]
            if missing:
                raise PipelineDefinitionError(
                    f"Step {node.name!r} is missing argument(s) {', '.join(missing)}.",
                    hint=f"Pass them in the pipeline or with -p {node.name}.{missing[0]}=VALUE.",
                )
        dag.topological()
        return dag


def step(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    retry_backoff: float = 1.0,
    timeout: float | None = None,
    cpus: float | None = None,
    memory: str | float | None = None,
    materializer: str | None = None,
) -> Any:
    """Declare a pipeline step: ``@step`` or ``@step(cache=False, retries=2, timeout=60, cpus=2, memory="4G")``."""

    def wrap(f: Callable[..., Any]) -> Step:
        return Step(f, name=name, cache=cache, retries=retries, retry_backoff=retry_backoff, timeout=timeout,
                    cpus=cpus, memory=memory, materializer=materializer)

    return wrap(func) if func is not None else wrap


def pipeline(func: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Declare a pipeline: a function that calls steps; the DAG follows the values passed between them."""

    def wrap(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(f, name=name)

    return wrap(func) if func is not None else wrap


def dataset(ref: str) -> Any:
    """Inside a pipeline: the table of dataset version ``ref`` (``name`` or ``name@version``) as a step input."""
    dag = _tracer.get()
    if dag is None:
        raise PipelineDefinitionError(
            f"loopml.pipelines.dataset({ref!r}) is only meaningful inside a @pipeline function.",
            hint="Outside a pipeline use loopml.data to load a dataset.",
        )
    return dag.add_dataset(ref)


def load_target(target: str | Pipeline, *, search_path: Path | None = None) -> Pipeline:
    """Import ``module:function`` (or ``path/to/file.py:function``) and return the pipeline it names."""
    if isinstance(target, Pipeline):
        return target
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise PipelineDefinitionError(
            f"The pipeline {target!r} must be given as module:function.",
            hint="For example: loopml pipeline run my_project.pipelines:training",
        )
    for extra in (search_path, Path.cwd()):
        if extra is not None and str(extra) not in sys.path:
            sys.path.insert(0, str(extra))
    if module_name.endswith(".py") or os.sep in module_name:
        path = Path(module_name).resolve()
        if not path.is_file():
            raise PipelineDefinitionError(f"The pipeline file {str(path)!r} does not exist.")
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        module_name = path.stem
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise PipelineDefinitionError(
                f"The module {module_name!r} of pipeline {target!r} cannot be found.",
                hint="Run from the project directory, or check the module name and PYTHONPATH.",
            ) from exc
        raise
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise PipelineDefinitionError(
                f"The module {module_name!r} has no function {attr!r} (pipeline {target!r}).",
                hint="Check the name after the colon.",
            )
    if isinstance(obj, Pipeline):
        return obj
    if callable(obj):
        # A plain function that calls steps works as a pipeline too.
        return Pipeline(obj)
    raise PipelineDefinitionError(f"{target!r} is not a function; it is a {type(obj).__name__}.")
