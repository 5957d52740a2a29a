"""Demo chapter: versioning the demo dataset, its statistics, validation and a diff."""

from __future__ import annotations

from typing import Any

RULES = """\
rows: {min: 100}
columns:
  age: {type: number, not_null: true, min: 18, max: 100}
  income: {type: number, min: 0}
  segment: {allowed: [a, b, c]}
  label: {type: int, allowed: [0, 1]}
"""


def _customers(n: int, seed: int, shift: float = 0.0) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n)
    income = rng.normal(50_000 + shift * 20_000, 15_000, n).clip(0)
    segment = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    score = 0.03 * (age - 50) + (income - 50_000) / 20_000 + (segment == "a") * 0.5
    label = (score + rng.normal(0, 1, n) > 0).astype(int)
    return pd.DataFrame({"age": age, "income": income.round(2), "segment": segment, "label": label})


def run(demo: Any) -> None:
    demo.banner("data: version the customers table (content-addressed, with statistics)")
    csv = demo.dir / "customers.csv"
    _customers(2000, seed=1).to_csv(csv, index=False)
    (demo.dir / "customers.rules.yaml").write_text(RULES)
    demo.cli("data", "rules", "set", "customers", "customers.rules.yaml")
    demo.cli("data", "add", "customers.csv", "--name", "customers", "--tag", "baseline", "--message", "first export")
    demo.cli("data", "add", "customers.csv", "--name", "customers")  # same bytes: unchanged, no copy
    demo.cli("data", "show", "customers@v1")
    demo.cli("data", "validate", "customers@v1")

    demo.banner("data: a new export arrives (income drifted); diff shows what changed")
    _customers(2500, seed=2, shift=1.0).to_csv(csv, index=False)
    demo.cli("data", "status", "customers.csv", "--name", "customers")
    demo.cli("data", "add", "customers.csv", "--name", "customers", "--message", "second export")
    demo.cli("data", "diff", "customers@v1", "customers@v2")
    demo.cli("data", "ls")
    demo.notes["dataset"] = "customers"
    demo.notes["dataset_v1"] = "customers@v1"
    demo.notes["dataset_v2"] = "customers@v2"
