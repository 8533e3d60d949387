"""``input.where:``: choosing items by what their headers say, before any compute.

An expression over the item's metadata (the columns of ``manifest.parquet``):
comparisons (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``),
``and``, ``or``, ``not``, parentheses, numbers, strings, lists, and ``+ - * /``.
It is parsed, never evaluated as Python: a name is a metadata key, nothing else.
An item that lacks a key the expression compares is not selected. ``id`` is
the item's id.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Iterable, Mapping
from typing import Any

from sciimg.errors import ConfigError

__all__ = ["Where"]

_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_ARITH = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class _Missing(Exception):
    """A key the item lacks (or holds no value for): the item is not selected."""


class Where:
    """A parsed ``input.where`` expression.

    Parameters
    ----------
    text : str
        E.g. ``"exptime > 60 and filter == 'g'"``.

    Raises
    ------
    ConfigError
        ``input.where: ...``, one line: not an expression, or one using
        anything but the above (a call, an attribute, an index).

    Examples
    --------
    >>> w = Where("exptime > 60 and filter in ['g', 'r']")
    >>> sorted(w.names)
    ['exptime', 'filter']
    >>> w({"exptime": 90.0, "filter": "g"}), w({"exptime": 30.0, "filter": "g"})
    (True, False)
    >>> w({"filter": "g"})  # no exptime: not selected
    False
    """

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            msg = f"input.where: not an expression ({exc.msg}): {text!r}"
            raise ConfigError(msg) from None
        self.names: set[str] = set()
        self._check(tree.body)
        self._tree = tree.body

    def _check(self, node: ast.AST) -> None:
        allowed = (
            ast.BoolOp,
            ast.UnaryOp,
            ast.Compare,
            ast.BinOp,
            ast.Name,
            ast.Constant,
            ast.List,
            ast.Tuple,
            ast.And,
            ast.Or,
            ast.Not,
            ast.USub,
            ast.Load,
            *_COMPARE,
            *_ARITH,
        )
        for child in ast.walk(node):
            if not isinstance(child, allowed):
                what = type(child).__name__.lower()
                msg = (
                    f"input.where: {what} is not allowed in {self.text!r} (use "
                    "comparisons, and/or/not, numbers, strings and lists)"
                )
                raise ConfigError(msg)
            if isinstance(child, ast.Name):
                self.names.add(child.id)

    def check_names(self, known: Iterable[str]) -> None:
        """Fail for a name no item has in its metadata (a misspelt key).

        Raises
        ------
        ConfigError
            Naming the key, the closest known one, and the keys there are.
        """
        from sciimg.pipeline.config_errors import did_you_mean

        known = sorted(set(known))
        for name in sorted(self.names - set(known)):
            msg = (
                f"input.where: no item has {name!r} in its metadata"
                f"{did_you_mean(name, known)} (keys: {', '.join(known)})"
            )
            raise ConfigError(msg)

    def __call__(self, metadata: Mapping[str, Any]) -> bool:
        try:
            return bool(self._eval(self._tree, metadata))
        except _Missing:
            return False
        except TypeError:  # comparing a string with a number, say
            return False

    def _eval(self, node: ast.AST, md: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            value = md.get(node.id)
            if value is None:
                raise _Missing(node.id)
            return value
        if isinstance(node, ast.List | ast.Tuple):
            return [self._eval(e, md) for e in node.elts]
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, md)
            return (not value) if isinstance(node.op, ast.Not) else -value
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, md), self._eval(node.right, md)
            return _ARITH[type(node.op)](left, right)
        if isinstance(node, ast.BoolOp):
            values = (self._eval_or_false(v, md) for v in node.values)
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, md)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = self._eval(comparator, md)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        raise AssertionError(type(node))  # ruled out by _check

    def _eval_or_false(self, node: ast.AST, md: Mapping[str, Any]) -> Any:
        # A missing key fails its own comparison, not a whole "or".
        try:
            return self._eval(node, md)
        except (_Missing, TypeError):
            return False
