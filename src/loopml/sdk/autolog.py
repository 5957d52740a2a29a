"""scikit-learn autologging: wraps ``fit`` of estimators to log params, scores and the model."""

from __future__ import annotations

import functools
import pickle
import tempfile
from pathlib import Path
from typing import Any

_patched: dict[type, Any] = {}
_state: dict[str, Any] = {"experiment": "default", "depth": 0}


def _estimator_classes() -> list[type]:
    from sklearn.utils import all_estimators

    classes = []
    for _name, cls in all_estimators():
        if "fit" in cls.__dict__:
            classes.append(cls)
    return classes


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
                           tags={"loopml.autolog": "sklearn", "estimator": f"{cls.__module__}.{cls.__name__}"}) as run:
                params = {k: v for k, v in self.get_params(deep=False).items() if not hasattr(v, "fit")}
                run.log_params(params)
                result = original(self, *args, **kwargs)
                if y is not None and hasattr(self, "score"):
                    try:
                        run.log_metric("training_score", float(self.score(X, y)))
                    except Exception:
                        pass
                for attr in ("best_score_", "oob_score_"):
                    val = getattr(self, attr, None)
                    if isinstance(val, (int, float)):
                        run.log_metric(attr.rstrip("_"), float(val))
                with tempfile.TemporaryDirectory() as d:
                    p = Path(d) / "model.pkl"
                    p.write_bytes(pickle.dumps(self))
                    run.log_artifact(p, name="model.pkl")
            return result
        finally:
            _state["depth"] -= 1

    fit.__loopml_original__ = original  # type: ignore[attr-defined]
    return fit


def autolog(*, disable: bool = False, experiment: str = "default") -> None:
    """Turn scikit-learn autologging on (or off with ``disable=True``)."""
    if disable:
        for cls, original in _patched.items():
            cls.fit = original  # type: ignore[attr-defined]
        _patched.clear()
        return
    _state["experiment"] = experiment
    for cls in _estimator_classes():
        if cls in _patched:
            continue
        original = cls.__dict__["fit"]
        _patched[cls] = original
        cls.fit = _wrap(cls, original)  # type: ignore[attr-defined]
