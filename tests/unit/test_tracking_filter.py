"""The run-search filter language: what it accepts and how it reads values."""

from __future__ import annotations

import math

import pytest

from loopml.errors import InvalidFilterError
from loopml.services.tracking.search import BoolOp, Compare, Not, parse_filter, parse_order_by


def test_filters_parse_into_a_tree_with_typed_values() -> None:
    node = parse_filter("metrics.acc > 0.9 AND not (params.model = 'rf' or tags.team in ('a', \"b\"))")
    assert node == BoolOp("and", Compare("metrics", "acc", ">", 0.9),
                          Not(BoolOp("or", Compare("params", "model", "=", "rf"),
                                     Compare("tags", "team", "in", ("a", "b")))))
    assert parse_filter("metrics.`val loss` <= -1e-3") == Compare("metrics", "val loss", "<=", -0.001)
    assert parse_filter("params.`pr\u00e9cision` = 'a'") == Compare("params", "pr\u00e9cision", "=", "a")  # non-ASCII: quoted
    assert parse_filter("params.x = 'it''s'") == Compare("params", "x", "=", "it's")
    assert parse_filter("status != 'FAILED'") == Compare("attribute", "status", "!=", "FAILED")
    assert parse_order_by("metrics.acc DESC") == ("metrics", "acc", True)


@pytest.mark.parametrize("text", ["inf", "INF", "Infinity", "+inf", "-INFINITY", "nan", "NaN"])
def test_infinity_and_nan_are_numbers_in_any_case(text: str) -> None:
    value = parse_filter(f"metrics.x < {text}").value  # type: ignore[union-attr]
    assert isinstance(value, float) and (math.isnan(value) or math.isinf(value))


@pytest.mark.parametrize("text", ["metrics.acc >", "metrics.acc > 'high' and", "size > 3", "metrics.acc >> 1",
                                  "params.pr\u00e9cision = 'a'"])
def test_bad_filters_say_where(text: str) -> None:
    with pytest.raises(InvalidFilterError, match="position"):
        parse_filter(text)
