"""Materializers: how step outputs become content-addressed objects and come back.

Each materializer writes a value to one file; the file is stored in the content store, so
equal outputs get equal digests and downstream cache keys follow content, not identity.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
import tarfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.errors import PipelineDefinitionError


class FallbackMaterializerWarning(UserWarning):
    """A step output was stored with pickle because no specific materializer accepted it."""


@dataclass(frozen=True)
class Materializer:
    """Stores values it ``accepts`` with ``save(value) -> bytes or Path``; ``load(path)`` reverses it."""

    name: str
    version: str
    accepts: Callable[[Any], bool]
    save: Callable[[Any, Path], None]
    load: Callable[[Path], Any]

    @property
    def versioned_name(self) -> str:
        return f"{self.name}@{self.version}"


def _mod(value: Any) -> str:
    return type(value).__module__.split(".", 1)[0]


# -- built-ins -------------------------------------------------------------------------------

def _is_dataframe(v: Any) -> bool:
    return _mod(v) == "pandas" and type(v).__name__ == "DataFrame"


def _save_dataframe(v: Any, path: Path) -> None:
    v.to_parquet(path, index=True)


def _load_dataframe(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path)


def _is_arrow_table(v: Any) -> bool:
    return _mod(v) == "pyarrow" and type(v).__name__ == "Table"


def _save_arrow(v: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(v, path)


def _load_arrow(path: Path) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(path)


def _is_ndarray(v: Any) -> bool:
    return _mod(v) == "numpy" and type(v).__name__ == "ndarray" and v.dtype != object


def _save_npy(v: Any, path: Path) -> None:
    import numpy as np

    with path.open("wb") as fh:
        np.save(fh, v, allow_pickle=False)


def _load_npy(path: Path) -> Any:
    import numpy as np

    return np.load(path, allow_pickle=False)


def _is_sklearn(v: Any) -> bool:
    if _mod(v) == "sklearn":
        return True
    base = sys.modules.get("sklearn.base")  # a value cannot be an estimator if sklearn is not loaded
    return base is not None and isinstance(v, base.BaseEstimator)


def _save_pickle(v: Any, path: Path) -> None:
    with path.open("wb") as fh:
        pickle.dump(v, fh, protocol=5)


def _load_pickle(path: Path) -> Any:
    with path.open("rb") as fh:
        return pickle.load(fh)


_JSON_SCALARS = (str, int, float, bool, type(None))


def _is_jsonable(v: Any, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if isinstance(v, _JSON_SCALARS):
        return not (isinstance(v, float) and v != v)  # NaN does not round-trip as JSON
    if isinstance(v, list):
        return all(_is_jsonable(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _is_jsonable(x, depth + 1) for k, x in v.items())
    return False


def _save_json(v: Any, path: Path) -> None:
    path.write_text(json.dumps(v, sort_keys=True, separators=(",", ":")), encoding="utf-8")


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _is_path(v: Any) -> bool:
    return isinstance(v, Path) and v.exists()


def _save_path(v: Path, path: Path) -> None:
    # A deterministic tar (sorted names, zeroed times and owners) so equal trees get equal digests.
    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        if v.is_file():
            tar.add(v, arcname=f"file/{v.name}", filter=clean)
        else:
            entries = sorted(p for p in v.rglob("*"))
            info = tarfile.TarInfo("dir")
            info.type = tarfile.DIRTYPE
            tar.addfile(clean(info))
            for p in entries:
                tar.add(p, arcname=f"dir/{p.relative_to(v).as_posix()}", recursive=False, filter=clean)


def _load_path(path: Path) -> Path:
    dest = path.with_name(path.name + ".d")
    if not dest.exists():
        tmp = path.with_name(path.name + ".tmp.d")
        with tarfile.open(path) as tar:
            tar.extractall(tmp, filter="data")
        tmp.rename(dest)
    if (dest / "file").is_dir():
        return next((dest / "file").iterdir())
    return dest / "dir"


BUILTIN: tuple[Materializer, ...] = (
    Materializer("pandas.parquet", "1", _is_dataframe, _save_dataframe, _load_dataframe),
    Materializer("arrow.parquet", "1", _is_arrow_table, _save_arrow, _load_arrow),
    Materializer("numpy.npy", "1", _is_ndarray, _save_npy, _load_npy),
    Materializer("sklearn.pickle", "1", _is_sklearn, _save_pickle, _load_pickle),
    Materializer("json", "1", _is_jsonable, _save_json, _load_json),
    Materializer("path.tar", "1", _is_path, _save_path, _load_path),
)
FALLBACK = Materializer("pickle", "1", lambda v: True, _save_pickle, _load_pickle)


class MaterializerRegistry:
    """User materializers first (newest first), then the built-ins, then the pickle fallback."""

    def __init__(self) -> None:
        self._user: list[Materializer] = []

    def register(
        self,
        name: str,
        *,
        accepts: Callable[[Any], bool] | type,
        save: Callable[[Any, Path], None],
        load: Callable[[Path], Any],
        version: str = "1",
    ) -> Materializer:
        """Add a materializer; ``accepts`` is a type or a predicate. Bump ``version`` when the format changes."""
        accepts_fn: Callable[[Any], bool]
        if isinstance(accepts, type):
            cls = accepts

            def accepts_type(v: Any) -> bool:
                return isinstance(v, cls)

            accepts_fn = accepts_type
        else:
            accepts_fn = accepts
        m = Materializer(name, str(version), accepts_fn, save, load)
        self._user = [x for x in self._user if x.name != name]
        self._user.insert(0, m)
        return m

    def all(self) -> list[Materializer]:
        return [*self._user, *BUILTIN, FALLBACK]

    def get(self, name: str) -> Materializer:
        base = name.split("@", 1)[0]
        for m in self.all():
            if m.name == base:
                return m
        raise PipelineDefinitionError(
            f"No materializer named {base!r} is registered in this process.",
            hint="Register it (loopml.pipelines materializers.register) in the module that defines the steps.",
        )

    def for_value(self, value: Any, *, preferred: str | None = None) -> Materializer:
        if preferred:
            return self.get(preferred)
        for m in [*self._user, *BUILTIN]:
            try:
                if m.accepts(value):
                    return m
            except Exception:  # a predicate that fails simply does not accept
                continue
        return FALLBACK


registry = MaterializerRegistry()


def register_materializer(
    name: str,
    *,
    accepts: Callable[[Any], bool] | type,
    save: Callable[[Any, Path], None],
    load: Callable[[Path], Any],
    version: str = "1",
) -> Materializer:
    """Register a materializer for step outputs in this process (and in workers that import your module)."""
    return registry.register(name, accepts=accepts, save=save, load=load, version=version)


def check_picklable(value: Any) -> str | None:
    """None if pickle can store ``value``; else the reason."""
    try:
        pickle.dump(value, io.BytesIO(), protocol=5)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def warn_fallback(step: str, value: Any) -> None:
    warnings.warn(
        f"Step {step!r} returned a {type(value).__module__}.{type(value).__qualname__}, which no materializer "
        "handles; it was stored with pickle (tied to this Python and package versions). Register a "
        "materializer for it to get a portable format.",
        FallbackMaterializerWarning,
        stacklevel=2,
    )
