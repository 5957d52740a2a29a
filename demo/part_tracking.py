"""Demo chapter: a small training script logs runs; search finds the best ones."""

from __future__ import annotations

import os
from typing import Any


def run(demo: Any) -> None:
    demo.banner("tracking: a training script logs params, metric series and the model to runs")
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    import loopml

    X, y = make_classification(n_samples=600, n_features=8, random_state=0)
    X_tr, X_va, y_tr, y_va = train_test_split(X, y, random_state=0)
    here = os.getcwd()
    os.chdir(demo.dir)
    try:
        for c in (0.01, 0.1, 1.0, 10.0):
            with loopml.start_run(experiment="churn", name=f"logreg-C{c}", params={"model": "logreg", "C": c},
                                  tags={"team": "a"}) as run:
                model = LogisticRegression(C=c, max_iter=200)
                for epoch in range(20):  # a learning curve over growing training subsets
                    n = 50 + epoch * 20
                    model.fit(X_tr[:n], y_tr[:n])
                    run.log_metrics({"train_acc": model.score(X_tr[:n], y_tr[:n]),
                                     "val_acc": model.score(X_va, y_va)}, step=epoch)
                run.log_dict({"coef": model.coef_.tolist()}, "coef.json")
        demo.notes["best_run"] = loopml.search_runs("params.model = 'logreg'", order_by="metrics.val_acc desc",
                                                    limit=1)["run_id"][0]
    finally:
        os.chdir(here)
    print("search finds the best runs:")
    demo.cli("runs", "ls", "--filter", "metrics.val_acc > 0.5 and (params.model = 'logreg' or tags.team in ('a','b'))",
             "--order-by", "metrics.val_acc desc", "--limit", "3")
    demo.cli("runs", "show", demo.notes["best_run"])
