"""scikit-learn autologging: wraps ``fit`` of estimators to log params, scores and the model."""

from __future__ import annotations

import functools
import pickle
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

_patched: dict[tuple[type, str], Any] = {}
# estimator -> (tracking service, run id) of its autologged fit; weak, so models are not kept alive
_fitted: weakref.WeakKeyDictionary[Any, tuple[Any, str]] = weakref.WeakKeyDictionary()
_state: dict[str, Any] = {"experiment": "default", "depth": 0, "scores": {}}


def _estimator_classes() -> list[type]:
    from sklearn.utils import all_estimators

    # patch the class that defines ``fit`` (GridSearchCV's lives on BaseSearchCV), each once
    owners: dict[type, None] = {}
    for _name, cls in all_estimators():
        owner = next((c for c in cls.__mro__ if "fit" in c.__dict__), None)
        if owner is not None and owner.__module__.startswith("sklearn"):
            owners[owner] = None
    return list(owners)


def _wrap(cls: type, original: Any) -> Any:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _state["depth"] > 0:  # inner fits of meta-estimators are not runs of their own
            return original(self, *args, **kwargs)
        X = args[0] if args else kwargs.get("X")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        from loopml.sdk.tracking import _active, start_run

        _state["depth"] += 1
        try:
            parent = _active[-1] if _active else None
            with start_run(_state["experiment"], name=type(self).__name__, parent=parent,
                           tags={"loopml.autolog": "sklearn", "estimator": f"{type(self).__module__}.{type(self).__name__}"}) as run:
                params = {k: v for k, v in self.get_params(deep=False).items() if not hasattr(v, "fit")}
                run.log_params(params)
                result = original(self, *args, **kwargs)
                if y is not None:
                    run.log_metrics(_training_metrics(self, X, y))
                for attr in ("best_score_", "oob_score_"):
                    val = getattr(self, attr, None)
                    if isinstance(val, (int, float)):
                        run.log_metric(attr.rstrip("_"), float(val))
                with tempfile.TemporaryDirectory() as d:
                    p = Path(d) / "model.pkl"
                    p.write_bytes(pickle.dumps(self))
                    run.log_artifact(p, name="model.pkl")
            try:
                _fitted[self] = (run.service, run.id)
            except TypeError:  # not weak-referenceable: no validation scores for it
                pass
            return result
        finally:
            _state["depth"] -= 1

    fit.__loopml_original__ = original  # type: ignore[attr-defined]
    return fit


def _training_metrics(est: Any, X: Any, y: Any) -> dict[str, float]:
    """Scores on the training data: the estimator's own ``score`` plus the usual metrics of its kind."""
    out: dict[str, float] = {}
    try:
        out["training_score"] = float(est.score(X, y))
    except Exception:
        return out
    try:
        from sklearn import metrics
        from sklearn.base import is_classifier, is_regressor

        pred = est.predict(X)
        if is_classifier(est):
            out["training_accuracy"] = float(metrics.accuracy_score(y, pred))
            out["training_f1"] = float(metrics.f1_score(y, pred, average="weighted"))
            out["training_precision"] = float(metrics.precision_score(y, pred, average="weighted", zero_division=0))
            out["training_recall"] = float(metrics.recall_score(y, pred, average="weighted", zero_division=0))
        elif is_regressor(est):
            out["training_mse"] = float(metrics.mean_squared_error(y, pred))
            out["training_mae"] = float(metrics.mean_absolute_error(y, pred))
            out["training_r2"] = float(metrics.r2_score(y, pred))
    except Exception:  # a metric that does not apply (multi-output, no predict) is simply not logged
        pass
    return out


def _wrap_score(original: Any) -> Any:
    """``est.score(X_val, y_val)`` after an autologged fit logs ``validation_score`` to the fit's run."""

    @functools.wraps(original)
    def score(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        try:
            target = _fitted.get(self)
        except TypeError:
            target = None
        if target is not None and _state["depth"] == 0 and isinstance(result, (int, float)):
            service, run_id = target
            n = _state["scores"].get(run_id, 0)
            _state["scores"][run_id] = n + 1
            from loopml.domain.tracking import MetricPoint

            try:
                service.log_batch(run_id, metrics=[MetricPoint("validation_score", float(result), n, time.time())])
            except Exception:  # never break the user's code for a logging failure
                pass
        return result

    score.__loopml_original__ = original  # type: ignore[attr-defined]
    return score


def autolog(*, disable: bool = False, experiment: str = "default") -> None:
    """Turn scikit-learn autologging on (or off with ``disable=True``).

    Every top-level ``fit`` becomes a run (params, training metrics, the pickled model); a later
    ``score(X_val, y_val)`` on that estimator logs ``validation_score`` to the same run.
    """
    if disable:
        for (cls, attr), original in _patched.items():
            setattr(cls, attr, original)
        _patched.clear()
        return
    _state["experiment"] = experiment
    from sklearn.base import ClassifierMixin, RegressorMixin

    for cls in _estimator_classes():
        if (cls, "fit") not in _patched:
            original = cls.__dict__["fit"]
            _patched[(cls, "fit")] = original
            cls.fit = _wrap(cls, original)  # type: ignore[attr-defined]
        if "score" in cls.__dict__ and (cls, "score") not in _patched:
            _patched[(cls, "score")] = cls.__dict__["score"]
            cls.score = _wrap_score(cls.__dict__["score"])  # type: ignore[attr-defined]
    for mixin in (ClassifierMixin, RegressorMixin):
        if (mixin, "score") not in _patched:
            _patched[(mixin, "score")] = mixin.__dict__["score"]
            mixin.score = _wrap_score(mixin.__dict__["score"])
