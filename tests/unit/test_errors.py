"""Errors users see follow one template and one tree."""

from __future__ import annotations

import loopml
from loopml.errors import InvalidParameterError, LoopmlError, NotFoundError, StoreError


def test_invalid_parameter_uses_the_scikit_learn_template() -> None:
    err = InvalidParameterError("threshold", "drift_check", "a float in (0, 1]", "abc")
    assert str(err) == "The 'threshold' parameter of drift_check must be a float in (0, 1]; got 'abc'."
    assert isinstance(err, ValueError) and isinstance(err, LoopmlError)


def test_hint_follows_the_message() -> None:
    err = NotFoundError("No dataset 'x'.", hint="List them with `loopml data ls`.")
    assert str(err) == "No dataset 'x'. List them with `loopml data ls`."


def test_every_error_has_an_exit_code_and_http_status() -> None:
    import loopml.errors as errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, LoopmlError)]
    assert len(classes) > 10
    for cls in classes:
        assert cls.exit_code > 0 and 400 <= cls.http_status < 600
    assert StoreError.exit_code != LoopmlError.exit_code
    assert loopml.LoopmlError is LoopmlError
