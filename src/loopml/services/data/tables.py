"""Tables (CSV, Parquet): reading them, and their schema and column statistics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from loopml.errors import TableParseError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_K = 10


def is_table_path(path: str | Path) -> bool:
    return str(path).lower().endswith(TABLE_SUFFIXES)


def read_table(path: str | Path, *, display_path: str | None = None) -> Any:
    """A pandas DataFrame of a CSV or Parquet file; TableParseError naming the path if it fails."""
    import pandas as pd

    p = Path(path)
    shown = display_path or str(p)
    try:
        if str(p).lower().endswith(".csv"):
            return pd.read_csv(p)
        return pd.read_parquet(p)
    except Exception as exc:
        raise TableParseError(
            f"Cannot parse the table {shown!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.",
            hint="Fix the file (or add it without table statistics by giving it another suffix).",
        ) from exc


def _num(value: Any) -> Any:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(f) or math.isinf(f):
        return None
    if float(f).is_integer() and abs(f) < 2**53:
        return int(f)
    return f


def table_stats(df: Any) -> dict[str, Any]:
    """Exact schema and per-column statistics of a DataFrame (JSON-safe)."""
    import pandas as pd

    columns: dict[str, Any] = {}
    for name in df.columns:
        col = df[name]
        nulls = int(col.isna().sum())
        non_null = col.dropna()
        info: dict[str, Any] = {
            "dtype": str(col.dtype),
            "count": len(col),
            "null_count": nulls,
            "distinct": int(non_null.nunique()),
        }
        if pd.api.types.is_bool_dtype(col):
            info["kind"] = "categorical"
        elif pd.api.types.is_numeric_dtype(col):
            info["kind"] = "numeric"
        elif pd.api.types.is_datetime64_any_dtype(col):
            info["kind"] = "datetime"
        else:
            info["kind"] = "categorical"
        if info["kind"] == "numeric" and len(non_null):
            info["min"] = _num(non_null.min())
            info["max"] = _num(non_null.max())
            info["mean"] = _num(non_null.mean())
            info["std"] = _num(non_null.std()) if len(non_null) > 1 else 0
            qs = non_null.quantile(list(QUANTILES))
            info["quantiles"] = {str(q): _num(v) for q, v in zip(QUANTILES, qs.tolist(), strict=True)}
        elif info["kind"] == "datetime" and len(non_null):
            info["min"] = str(non_null.min())
            info["max"] = str(non_null.max())
        if info["kind"] == "categorical" and len(non_null):
            top = non_null.astype(str).value_counts().head(TOP_K)
            info["top"] = [[str(k), int(v)] for k, v in top.items()]
        columns[str(name)] = info
    return {
        "rows": len(df),
        "schema": {str(n): str(df[n].dtype) for n in df.columns},
        "columns": columns,
    }
