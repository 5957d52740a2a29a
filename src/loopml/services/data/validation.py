"""Validation rules for tables (YAML or Python) and the pass/fail report they give."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopml.errors import ConfigError


@dataclass(frozen=True, slots=True)
class CheckResult:
    rule: str
    passed: bool
    detail: str = ""


@dataclass
class ValidationReport:
    """The outcome of running rules on one dataset version."""

    target: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "passed": self.passed,
                "checks": [{"rule": c.rule, "passed": c.passed, "detail": c.detail} for c in self.checks]}


_TYPES = {
    "int": "is_integer_dtype", "integer": "is_integer_dtype", "float": "is_float_dtype",
    "number": "is_numeric_dtype", "numeric": "is_numeric_dtype", "bool": "is_bool_dtype",
    "string": "is_object_dtype", "str": "is_object_dtype", "datetime": "is_datetime64_any_dtype",
}


def load_rules(path: str | Path) -> dict[str, Any]:
    """Rules from a YAML file, or a Python file defining ``RULES`` (dict) and/or ``check(df)`` functions."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"The rules file {str(p)!r} does not exist.", hint="Pass the path of a YAML or .py rules file.")
    if p.suffix == ".py":
        return {"python": str(p.resolve())}
    import yaml

    try:
        rules = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"The rules file {str(p)!r} is not valid YAML: {exc}.") from exc
    if not isinstance(rules, dict):
        raise ConfigError(f"The rules file {str(p)!r} must hold a mapping (columns:, rows:); got {type(rules).__name__}.")
    return rules


def run_rules(df: Any, rules: dict[str, Any], target: str) -> ValidationReport:
    """Check a DataFrame against rules: columns (presence, type, not_null, min/max, allowed, unique), rows, python."""
    import pandas as pd

    report = ValidationReport(target)
    add = report.checks.append
    rows = rules.get("rows") or {}
    if "min" in rows:
        add(CheckResult(f"rows >= {rows['min']}", len(df) >= rows["min"], f"{len(df)} rows"))
    if "max" in rows:
        add(CheckResult(f"rows <= {rows['max']}", len(df) <= rows["max"], f"{len(df)} rows"))
    for name, spec in (rules.get("columns") or {}).items():
        spec = spec or {}
        if name not in df.columns:
            add(CheckResult(f"{name}: present", False, "column is missing"))
            continue
        add(CheckResult(f"{name}: present", True))
        col = df[name]
        if "type" in spec:
            check = _TYPES.get(str(spec["type"]))
            ok = bool(getattr(pd.api.types, check)(col)) if check else str(col.dtype) == str(spec["type"])
            add(CheckResult(f"{name}: type {spec['type']}", ok, f"dtype {col.dtype}"))
        if spec.get("not_null"):
            n = int(col.isna().sum())
            add(CheckResult(f"{name}: not null", n == 0, f"{n} nulls"))
        if "min" in spec:
            bad = int((col.dropna() < spec["min"]).sum())
            add(CheckResult(f"{name} >= {spec['min']}", bad == 0, f"{bad} values below"))
        if "max" in spec:
            bad = int((col.dropna() > spec["max"]).sum())
            add(CheckResult(f"{name} <= {spec['max']}", bad == 0, f"{bad} values above"))
        if "allowed" in spec:
            allowed = set(spec["allowed"])
            bad_values = sorted({str(v) for v in col.dropna().unique() if v not in allowed})
            add(CheckResult(f"{name}: allowed values", not bad_values,
                            f"unexpected: {', '.join(bad_values[:5])}" if bad_values else ""))
        if spec.get("unique"):
            dups = int(col.dropna().duplicated().sum())
            add(CheckResult(f"{name}: unique", dups == 0, f"{dups} duplicates"))
    if rules.get("python"):
        report.checks.extend(_python_checks(df, str(rules["python"])))
    return report


def _python_checks(df: Any, path: str) -> list[CheckResult]:
    spec = importlib.util.spec_from_file_location("loopml_user_rules", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"Cannot load the Python rules file {path!r}.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out: list[CheckResult] = []
    declared = getattr(module, "RULES", None)
    if isinstance(declared, dict):
        out.extend(run_rules(df, declared, "").checks)
    for attr in sorted(dir(module)):
        fn = getattr(module, attr)
        if attr.startswith("check") and callable(fn):
            try:
                result = fn(df)
            except Exception as exc:
                out.append(CheckResult(f"{attr}()", False, f"raised {type(exc).__name__}: {exc}"))
                continue
            if isinstance(result, str):
                out.append(CheckResult(f"{attr}()", False, result))
            elif isinstance(result, (list, tuple)):
                out.append(CheckResult(f"{attr}()", not result, "; ".join(map(str, result))))
            else:
                out.append(CheckResult(f"{attr}()", bool(result) or result is None))
    return out
