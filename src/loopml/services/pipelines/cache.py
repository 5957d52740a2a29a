"""Cache keys of step runs: code (the step and the project functions it calls), params, inputs, environment."""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import sysconfig
import types
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from loopml.services.pipelines.materializers import FALLBACK, Materializer

KEY_FORMAT = "1"

_NON_PROJECT_DIRS = tuple(
    p for p in {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")} if p
)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def _sha(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _is_project_code(obj: Any) -> bool:
    """Functions/classes defined in the user's project: not builtins, stdlib or site-packages."""
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    if not path:
        return getattr(obj, "__module__", None) == "__main__"
    if path.startswith(_NON_PROJECT_DIRS) or "site-packages" in path or "dist-packages" in path:
        return False
    return not (getattr(obj, "__module__", "") or "").startswith("loopml.")


def _source_of(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return repr(code.co_code) if code is not None else repr(obj)


def _unwrap(obj: Any) -> Any:
    func = getattr(obj, "func", None)  # a Step or Pipeline object wraps the function
    if callable(func) and hasattr(obj, "signature"):
        return func
    return obj


def _referenced(func: types.FunctionType) -> tuple[list[Any], set[str]]:
    """Objects a function's code names through globals/closures, and top-level modules it touches."""
    found: list[Any] = []
    modules: set[str] = set()
    g = func.__globals__
    codes = [func.__code__]
    names: set[str] = set()
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    values = [g[n] for n in sorted(names) if n in g]
    # imports inside the function body (`from sklearn.linear_model import ...`) name modules directly
    modules.update(n.split(".", 1)[0] for n in names if n not in g and n in sys.modules)
    if func.__closure__:
        for cell in func.__closure__:
            try:
                values.append(cell.cell_contents)
            except ValueError:
                continue
    for value in values:
        if isinstance(value, types.ModuleType):
            modules.add(value.__name__.split(".", 1)[0])
            continue
        value = _unwrap(value)
        mod = getattr(value, "__module__", None)
        if isinstance(mod, str):
            modules.add(mod.split(".", 1)[0])
        if isinstance(value, types.FunctionType | type) and _is_project_code(value):
            found.append(value)
    return found, modules


@lru_cache(maxsize=4096)
def code_fingerprint(func: types.FunctionType) -> tuple[str, tuple[tuple[str, str], ...], tuple[str, ...]]:
    """(hash of the step source, [(project function, hash)], [top-level modules it imports]).

    Walks the project functions it calls, transitively, so a change in a helper changes the key.
    """
    own = _sha(_source_of(func))
    seen: dict[str, str] = {}
    modules: set[str] = set()
    stack: list[Any] = [func]
    visited: set[int] = set()
    while stack:
        obj = stack.pop()
        if id(obj) in visited:
            continue
        visited.add(id(obj))
        if obj is not func:
            seen[f"{obj.__module__}:{obj.__qualname__}"] = _sha(_source_of(obj))
        funcs: list[types.FunctionType] = []
        if isinstance(obj, types.FunctionType):
            funcs = [obj]
        elif isinstance(obj, type):
            funcs = [v for v in vars(obj).values() if isinstance(v, types.FunctionType)]
        for f in funcs:
            refs, mods = _referenced(f)
            modules |= mods
            stack.extend(refs)
    stdlib = set(sys.stdlib_module_names) | {"builtins", "__main__", "loopml"}
    return own, tuple(sorted(seen.items())), tuple(sorted(m for m in modules if m not in stdlib))


@lru_cache(maxsize=1024)
def package_version(module: str) -> str | None:
    """``dist==version`` of the installed package providing top-level ``module``, if known."""
    from importlib.metadata import PackageNotFoundError, version

    mod = sys.modules.get(module)
    v = getattr(mod, "__version__", None)
    if isinstance(v, str):
        return f"{module}=={v}"
    for dist in (module, module.replace("_", "-")):
        try:
            return f"{dist}=={version(dist)}"
        except PackageNotFoundError:
            continue
    return None


def key_parts(
    func: types.FunctionType,
    *,
    params: Mapping[str, Any],
    inputs: Mapping[str, tuple[str, str]],
    output_materializer: Materializer | None = None,
    registered: list[Materializer] | None = None,
) -> dict[str, Any]:
    """Everything the cache key covers, as a JSON-able dict (kept for `pipeline explain`).

    ``inputs`` maps argument -> (digest, materializer@version).
    """
    own, helpers, modules = code_fingerprint(func)
    packages = {m: package_version(m) for m in modules}
    mats = {m.name: m.version for m in (registered or [])}
    if output_materializer is not None:
        mats["output"] = output_materializer.versioned_name
    mats.setdefault(FALLBACK.name, FALLBACK.version)
    return {
        "format": KEY_FORMAT,
        "source": own,
        "helpers": dict(helpers),
        "params": {k: _param_fingerprint(v) for k, v in sorted(params.items())},
        "inputs": {k: f"{d}:{m}" for k, (d, m) in sorted(inputs.items())},
        "materializers": mats,
        "packages": {k: v for k, v in sorted(packages.items()) if v is not None},
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }


def _param_fingerprint(value: Any) -> str:
    """Parameters as canonical JSON; a ``pathlib.Path`` to an existing file or directory adds its content hash."""
    from pathlib import Path

    if isinstance(value, Path) and value.exists():
        return f"path:{value}:{path_content_hash(value)}"
    return canonical_json(value)


def path_content_hash(path: Any) -> str:
    """BLAKE3 of a file, or of a directory's relative names and file hashes."""
    from pathlib import Path

    from loopml.stores.artifacts.hashing import hash_bytes, hash_file

    p = Path(path)
    if p.is_file():
        return hash_file(p)
    entries = [f"{f.relative_to(p).as_posix()}:{hash_file(f)}" for f in sorted(p.rglob("*")) if f.is_file()]
    return hash_bytes("\n".join(entries).encode())


def cache_key(parts: Mapping[str, Any]) -> str:
    return hashlib.blake2b(canonical_json(parts).encode(), digest_size=32).hexdigest()


_LABELS = {
    "source": "the step's source code",
    "helpers": "the source of project functions it calls",
    "params": "its parameters",
    "inputs": "the content of its inputs",
    "materializers": "materializer versions",
    "packages": "versions of packages it imports",
    "python": "the Python version",
    "format": "the cache key format",
}


def explain_difference(now: Mapping[str, Any], before: Mapping[str, Any]) -> list[str]:
    """Human lines saying which parts of two cache keys differ, naming the changed entries."""
    lines: list[str] = []
    for part, label in _LABELS.items():
        a, b = now.get(part), before.get(part)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            detail = []
            for k in changed:
                if k not in b:
                    detail.append(f"{k} added")
                elif k not in a:
                    detail.append(f"{k} removed")
                elif part == "params":
                    detail.append(f"{k}: {b[k]} -> {a[k]}")
                elif part == "packages":
                    detail.append(f"{b[k]} -> {a[k]}")
                else:
                    detail.append(f"{k} changed")
            lines.append(f"{label} changed: {', '.join(detail)}")
        else:
            lines.append(f"{label} changed")
    return lines
