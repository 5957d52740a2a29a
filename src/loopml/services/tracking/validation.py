"""Checks shared by the SDK (at the call) and the service (for the server's 4xx)."""

from __future__ import annotations

import math
import re
from typing import Any

from loopml.errors import InvalidParameterError

KEY_MAX = 250
VALUE_MAX = 1000
_KEY = re.compile(r"^[A-Za-z0-9_\-./: ]+$")


def check_key(key: Any, what: str = "metric") -> str:
    if not isinstance(key, str) or not key or len(key) > KEY_MAX or not _KEY.match(key) or key.strip() != key:
        raise InvalidParameterError(
            f"{what} key", f"log_{what}",
            f"a non-empty string of at most {KEY_MAX} characters from letters, digits and _-./: "
            "(no leading or trailing space)", key)
    return key


def check_value(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as np

            if isinstance(value, (np.floating, np.integer)) or (isinstance(value, np.ndarray) and value.ndim == 0):
                return float(value)
        except ImportError:
            pass
        raise InvalidParameterError(f"value of metric {key!r}", "log_metric", "a number (int or float)", value)
    return float(value)


def check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int):
        try:
            import numpy as np

            if isinstance(step, np.integer):
                return int(step)
        except ImportError:
            pass
        raise InvalidParameterError("step", "log_metric", "an integer", step)
    return step


def param_text(key: str, value: Any, what: str = "param") -> str:
    text = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    if len(text) > VALUE_MAX:
        raise InvalidParameterError(f"value of {what} {key!r}", f"log_{what}",
                                    f"at most {VALUE_MAX} characters long", text[:40] + "...")
    return text


def is_finite(v: float) -> bool:
    return math.isfinite(v)
