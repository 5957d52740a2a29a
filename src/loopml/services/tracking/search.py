"""The run-search filter language: tokenizer, recursive-descent parser, SQLAlchemy compiler.

Grammar::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | atom
    atom    := "(" expr ")" | ident op value | ident ["not"] "in" "(" value ("," value)* ")"
    ident   := (metrics|params|tags) "." name | status|start_time|end_time|duration|experiment|name|run_id
    op      := = | != | < | <= | > | >= | like

Every value becomes a bound parameter; no user text is ever formatted into SQL.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from loopml.errors import InvalidFilterError

ATTRIBUTES = ("status", "start_time", "end_time", "duration", "experiment", "name", "run_id", "parent_id")
_KINDS = ("metrics", "params", "tags", "metric", "param", "tag", "attributes", "attribute", "attr")

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<num>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|(?i:inf(?:inity)?|nan)\b))
    |(?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
    |(?P<op><=|>=|!=|<>|==|=|<|>)
    |(?P<punct>[(),])
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z0-9_\-/:]+(?:\.[A-Za-z0-9_\-/:]+)*|`[^`]+`|"[^"]+"))?)
    """,
    re.VERBOSE,  # case-insensitive only for inf/nan: a global IGNORECASE doubled the compile time
)


# Named tuples rather than frozen dataclasses: this module is imported by the first search, and
# the four dataclasses made that import cost ~4 ms; named tuples ~0.5 ms.


class Token(NamedTuple):
    kind: str
    text: str
    pos: int


class Compare(NamedTuple):
    kind: str  # metrics | params | tags | attribute
    key: str
    op: str  # = != < <= > >= like in notin
    value: Any


class BoolOp(NamedTuple):
    op: str  # and | or
    left: Node
    right: Node


class Not(NamedTuple):
    operand: Node


Node = Compare | BoolOp | Not


def _error(text: str, pos: int, what: str) -> InvalidFilterError:
    caret = " " * pos + "^"
    return InvalidFilterError(
        f"Invalid filter at position {pos}: {what}.\n  {text}\n  {caret}",
        hint="Example: metrics.acc > 0.9 and (params.model = 'rf' or tags.team in ('a', 'b')).",
    )


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _error(text, pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _unquote(s: str) -> str:
    q = s[0]
    body = s[1:-1]
    if q == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _kw(self, word: str) -> bool:
        t = self.tok
        return t.kind == "ident" and t.text.lower() == word

    def _expect(self, kind: str, text: str | None = None) -> Token:
        t = self.tok
        if t.kind != kind or (text is not None and t.text != text):
            raise _error(self.text, t.pos, f"expected {text or kind!r}, found {t.text or 'end of filter'!r}")
        self.i += 1
        return t

    def parse(self) -> Node:
        node = self._or()
        if self.tok.kind != "end":
            raise _error(self.text, self.tok.pos, f"unexpected {self.tok.text!r} (expected 'and', 'or' or the end)")
        return node

    def _or(self) -> Node:
        node = self._and()
        while self._kw("or"):
            self.i += 1
            node = BoolOp("or", node, self._and())
        return node

    def _and(self) -> Node:
        node = self._not()
        while self._kw("and"):
            self.i += 1
            node = BoolOp("and", node, self._not())
        return node

    def _not(self) -> Node:
        if self._kw("not"):
            self.i += 1
            return Not(self._not())
        return self._atom()

    def _atom(self) -> Node:
        t = self.tok
        if t.kind == "punct" and t.text == "(":
            self.i += 1
            inner = self._or()
            self._expect("punct", ")")
            return inner
        kind, key = self._ident()
        op_tok = self.tok
        if op_tok.kind == "op":
            self.i += 1
            op = {"==": "=", "<>": "!="}.get(op_tok.text, op_tok.text)
            return Compare(kind, key, op, self._value())
        negate = False
        if self._kw("not"):
            negate = True
            self.i += 1
        if self._kw("like") or self._kw("ilike"):
            op = self.tok.text.lower()
            self.i += 1
            value = self._value()
            if not isinstance(value, str):
                raise _error(self.text, self.tokens[self.i - 1].pos, "'like' needs a quoted string")
            node: Node = Compare(kind, key, op, value)
            return Not(node) if negate else node
        if self._kw("in"):
            self.i += 1
            self._expect("punct", "(")
            values = [self._value()]
            while self.tok.kind == "punct" and self.tok.text == ",":
                self.i += 1
                values.append(self._value())
            self._expect("punct", ")")
            return Compare(kind, key, "notin" if negate else "in", tuple(values))
        raise _error(self.text, op_tok.pos,
                     f"expected a comparison (=, !=, <, <=, >, >=, like, in) after {t.text!r}, "
                     f"found {op_tok.text or 'end of filter'!r}")

    def _ident(self) -> tuple[str, str]:
        t = self.tok
        if t.kind != "ident":
            raise _error(self.text, t.pos, f"expected a name like metrics.acc or status, found {t.text or 'end of filter'!r}")
        self.i += 1
        head, dot, rest = t.text.partition(".")
        low = head.lower()
        if dot:
            if low not in _KINDS:
                raise _error(self.text, t.pos, f"unknown prefix {head!r} (use metrics., params., tags. or attributes.)")
            if rest[:1] in "`\"":
                rest = rest[1:-1]
            kind = {"metric": "metrics", "param": "params", "tag": "tags",
                    "attribute": "attribute", "attributes": "attribute", "attr": "attribute"}.get(low, low)
            if kind == "attribute":
                if rest.lower() not in ATTRIBUTES:
                    raise _error(self.text, t.pos, f"unknown attribute {rest!r} (one of {', '.join(ATTRIBUTES)})")
                return kind, rest.lower()
            return kind, rest
        if low in ("id",):
            low = "run_id"
        if low not in ATTRIBUTES:
            raise _error(self.text, t.pos,
                         f"unknown name {t.text!r} (use metrics.X, params.X, tags.X or one of {', '.join(ATTRIBUTES)})")
        return "attribute", low

    def _value(self) -> Any:
        t = self.tok
        if t.kind == "num":
            self.i += 1
            text = t.text.lower()
            if re.fullmatch(r"[-+]?\d+", text):
                return int(text)
            return float(text)
        if t.kind == "str":
            self.i += 1
            return _unquote(t.text)
        if t.kind == "ident" and t.text.lower() in ("true", "false", "null", "none"):
            self.i += 1
            return {"true": True, "false": False}.get(t.text.lower())
        raise _error(self.text, t.pos, f"expected a number or a quoted string, found {t.text or 'end of filter'!r}")


def parse_filter(text: str) -> Node:
    """Parse ``text`` into a tree; raises InvalidFilterError pointing at the position."""
    return _Parser(text).parse()


def compile_filter(node: Node) -> Any:
    """The SQLAlchemy boolean expression (over ``tracking_runs``) for a parsed filter."""
    from sqlalchemy import and_, not_, or_

    if isinstance(node, BoolOp):
        left, right = compile_filter(node.left), compile_filter(node.right)
        return and_(left, right) if node.op == "and" else or_(left, right)
    if isinstance(node, Not):
        return not_(compile_filter(node.operand))
    return _compile_compare(node)


def _apply(column: Any, op: str, value: Any) -> Any:
    if op == "=":
        return column.is_(None) if value is None else column == value
    if op == "!=":
        return column.is_not(None) if value is None else column != value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op == ">":
        return column > value
    if op == ">=":
        return column >= value
    if op == "like":
        return column.like(value)
    if op == "ilike":
        return column.ilike(value)
    if op == "in":
        return column.in_(list(value))
    if op == "notin":
        return column.not_in(list(value))
    raise AssertionError(op)


# What counts as a number in a param or tag compared with < <= > >=; other values don't match.
# Checked before the cast because PostgreSQL raises on CAST('rf' AS FLOAT) and SQLite makes it 0.
NUMBER_PATTERN = r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


def _numeric(column: Any) -> Any:
    from sqlalchemy import Float, case, cast

    return case((column.regexp_match(NUMBER_PATTERN), cast(column, Float)), else_=None)


def _runs_with(table: Any, key: str, cond: Any = None) -> Any:
    """``run id IN (runs having ``key`` in ``table`` [with ``cond``])``.

    An IN over the (key, value) index lets the database start from the few matching rows
    instead of probing every run with a correlated EXISTS.
    """
    from sqlalchemy import select

    from loopml.stores.metadata.schema.tracking import runs

    sub = select(table.c.run_id).where(table.c.key == key)
    if cond is not None:
        sub = sub.where(cond)
    return runs.c.id.in_(sub)


def _compile_compare(c: Compare) -> Any:
    import math

    from loopml.stores.metadata.schema.tracking import latest_metrics, params, runs, tags

    if c.kind == "attribute":
        column: Any = runs.c.id if c.key == "run_id" else (
            (runs.c.end_time - runs.c.start_time) if c.key == "duration" else runs.c[c.key])
        return _apply(column, c.op, c.value)
    if c.kind == "metrics":
        values = c.value if isinstance(c.value, tuple) else (c.value,)
        for v in values:
            if isinstance(v, str) or v is None or isinstance(v, bool):
                raise InvalidFilterError(
                    f"metrics.{c.key} compares with numbers; got {v!r}.",
                    hint="Write the value without quotes, e.g. metrics.acc > 0.9.")
        if c.op in ("like", "ilike"):
            raise InvalidFilterError(f"'like' does not apply to metrics.{c.key}.", hint="Use a comparison.")

        def clamp(v: float) -> float:
            return 1.7976931348623157e308 if v == math.inf else -1.7976931348623157e308 if v == -math.inf else v

        value: Any = tuple(clamp(float(v)) for v in values) if isinstance(c.value, tuple) else clamp(float(c.value))
        t = latest_metrics
        return _runs_with(t, c.key, _apply(t.c.value, c.op, value))
    t = params if c.kind == "params" else tags
    if isinstance(c.value, (int, float)) and not isinstance(c.value, bool) and c.op in ("<", "<=", ">", ">="):
        column = _numeric(t.c.value)
        val: Any = c.value
    elif isinstance(c.value, tuple):
        column, val = t.c.value, tuple(_text(v) for v in c.value)
    else:
        column, val = t.c.value, None if c.value is None else _text(c.value)
    if val is None and c.op in ("=", "!="):
        present = _runs_with(t, c.key)
        return ~present if c.op == "=" else present
    return _runs_with(t, c.key, _apply(column, c.op, val))


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return repr(v)
    return str(v)


def parse_order_by(item: str) -> tuple[str, str, bool]:
    """``"metrics.acc desc"`` -> ("metrics", "acc", descending)."""
    text = item.strip()
    desc = False
    low = text.lower()
    if low.endswith(" desc"):
        desc, text = True, text[:-5].strip()
    elif low.endswith(" asc"):
        text = text[:-4].strip()
    parser = _Parser(text)
    kind, key = parser._ident()
    if parser.tok.kind != "end":
        raise _error(text, parser.tok.pos, "expected 'asc', 'desc' or the end of the order-by item")
    return kind, key, desc
