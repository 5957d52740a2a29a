"""Demo chapter: train through a cached pipeline (validate data, featurize, train, evaluate), twice."""

from __future__ import annotations

import textwrap
from typing import Any

PIPELINE_MODULE = '''
"""The demo's training pipeline: plain Python functions, one decorator each."""

from pathlib import Path

import pandas as pd
import loopml
from loopml.sdk.pipelines import dataset, log_metrics


@loopml.step
def read_csv(path: Path) -> pd.DataFrame:
    # A Path parameter puts the file's content hash into the cache key.
    return pd.read_csv(path)


@loopml.step
def validate(df: pd.DataFrame, target: str = "label") -> pd.DataFrame:
    if target not in df.columns:
        raise ValueError(f"column {target!r} is missing")
    if df.isna().any().any():
        raise ValueError("the data has missing values")
    print(f"validated {len(df)} rows, {df.shape[1] - 1} features")
    return df


@loopml.step
def featurize(df: pd.DataFrame, target: str = "label") -> pd.DataFrame:
    # numbers are standardised, categories one-hot encoded
    features = pd.get_dummies(df.drop(columns=[target]), dtype=float)
    scaled = (features - features.mean()) / features.std(ddof=0).replace(0, 1)
    scaled[target] = df[target].to_numpy()
    return scaled


@loopml.step
def train(features: pd.DataFrame, target: str = "label", C: float = 1.0):
    from sklearn.linear_model import LogisticRegression

    X, y = features.drop(columns=[target]), features[target]
    return LogisticRegression(C=C, max_iter=500).fit(X, y)


@loopml.step
def evaluate(model, features: pd.DataFrame, target: str = "label") -> dict:
    X, y = features.drop(columns=[target]), features[target]
    accuracy = float((model.predict(X) == y).mean())
    log_metrics(accuracy=accuracy)
    return {"accuracy": accuracy}


@loopml.pipeline
def training(data_csv: str = "", dataset_name: str = "", C: float = 1.0):
    raw = dataset(dataset_name) if dataset_name else read_csv(Path(data_csv).resolve())
    features = featurize(validate(raw))
    model = train(features, C=C)
    evaluate(model, features)
'''


def _demo_csv(demo: Any) -> str:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    X = rng.normal(size=(500, 4))
    y = (X @ np.array([1.5, -2.0, 0.5, 0.0]) + rng.normal(scale=0.5, size=500) > 0).astype(int)
    df = pd.DataFrame(X, columns=["f1", "f2", "f3", "f4"]).assign(label=y)
    path = demo.dir / "training.csv"
    df.to_csv(path, index=False)
    return str(path.name)


def run(demo: Any) -> None:
    demo.banner("pipelines: validate -> featurize -> train -> evaluate, as plain Python steps")
    (demo.dir / "demo_training.py").write_text(textwrap.dedent(PIPELINE_MODULE).lstrip(), encoding="utf-8")
    name = demo.notes.get("dataset_name") or demo.notes.get("dataset")
    if isinstance(name, str):
        params = ["-p", f"dataset_name={name}"]
        print(f"(reading the dataset {name!r} the data chapter versioned)")
    else:
        params = ["-p", f"data_csv={_demo_csv(demo)}"]
    demo.cli("pipeline", "graph", "demo_training:training", *params)

    demo.banner("first run: every step executes; outputs go to the content-addressed store")
    demo.cli("pipeline", "run", "demo_training:training", *params)
    first = _latest_run(demo)

    demo.banner("second run, same code, params and data: every step comes from the cache")
    demo.cli("pipeline", "run", "demo_training:training", *params)
    second = _latest_run(demo)
    cached = [s.name for s in second.steps if s.status == "CACHED"]
    print(f"cached {len(cached)} of {len(second.steps)} steps: {', '.join(cached)}")
    if len(cached) != len(second.steps):
        raise SystemExit("demo: the second pipeline run was expected to be fully cached")
    demo.cli("pipeline", "explain", second.id[-8:], "train")

    demo.banner("change one parameter: only train and evaluate run again")
    demo.cli("pipeline", "run", "demo_training:training", *params, "-p", "C=0.1")
    demo.cli("pipeline", "explain", _latest_run(demo).id[-8:], "train")

    model = next(s for s in first.steps if s.name == "train")
    demo.banner("lineage of the trained model: data, steps, code and params upstream; evaluation downstream")
    demo.cli("lineage", (model.output_digest or "")[:16], "--html", "model-lineage.html")
    print(f"open {demo.dir / 'model-lineage.html'} for the lineage graph")
    demo.notes.update({"pipeline_target": "demo_training:training", "pipeline_params": params,
                       "pipeline_run": first.id, "model_digest": model.output_digest})


def _latest_run(demo: Any) -> Any:
    from loopml import Workspace

    with Workspace.open(demo.dir) as ws:
        run = ws.pipelines.list_runs(limit=1)[0]
        return ws.pipelines.get_run(run.id)
