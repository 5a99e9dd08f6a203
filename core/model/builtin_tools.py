"""The read-only tools threadwise ships: `current_time` and `calculator`.

Both answer questions models get wrong on their own (today's date, exact arithmetic)
and touch nothing outside the process.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.model.tools import FunctionTool, ToolRegistry

MAX_EXPRESSION_CHARS = 500
MAX_RESULT_BITS = 4096  # integer powers beyond this are refused (they would stall the loop)


async def current_time(args: dict[str, Any]) -> str:
    zone_name = args.get("timezone") or "UTC"
    if not isinstance(zone_name, str):
        raise ValueError("timezone must be a string such as 'Europe/Paris'")
    try:
        zone = UTC if zone_name.upper() == "UTC" else ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone_name!r}; use an IANA name") from None
    now = datetime.now(zone)
    return f"{now.isoformat(timespec='seconds')} ({now:%A}, {zone_name})"


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10,
    "log2": math.log2, "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "asin": math.asin, "acos": math.acos, "atan": math.atan, "abs": abs,
    "round": round, "floor": math.floor, "ceil": math.ceil,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _power(base: Any, exponent: Any) -> Any:
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and abs(base) > 1
        and exponent * math.log2(abs(base)) > MAX_RESULT_BITS
    ):
        raise ValueError("the result would be too large")
    return operator.pow(base, exponent)


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_evaluate(arg) for arg in node.args))
    raise ValueError(f"unsupported syntax: {ast.unparse(node)[:60]}")


def evaluate(expression: str) -> int | float:
    """Exact arithmetic on numbers, + - * / // % **, parentheses and a few math functions."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except (SyntaxError, RecursionError, MemoryError):
        raise ValueError("not an arithmetic expression") from None
    try:
        result = _evaluate(tree)
    except ZeroDivisionError:
        raise ValueError("division by zero") from None
    except OverflowError:
        raise ValueError("the result is too large") from None
    except TypeError as exc:
        raise ValueError(f"bad arguments: {exc}") from None
    if isinstance(result, complex) or not isinstance(result, int | float):
        raise ValueError("the result is not a real number")
    return result


async def calculator(args: dict[str, Any]) -> str:
    expression = args.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("expression must be a non-empty string")
    result = evaluate(expression)
    if isinstance(result, float):
        return format(result, ".15g")
    return str(result)


CURRENT_TIME = FunctionTool(
    name="current_time",
    description=(
        "Get the current date and time (ISO 8601, with the weekday). Use it for any "
        "question about today, now, or dates relative to today."
    ),
    parameters={
        "type": "object",
        "properties": {
            "timezone": {
                "type": ["string", "null"],
                "description": "IANA time zone, e.g. 'Europe/Paris'; null for UTC.",
            }
        },
        "required": ["timezone"],
        "additionalProperties": False,
    },
    handler=current_time,
)

CALCULATOR = FunctionTool(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression exactly: numbers, + - * / // % ** (or ^), "
        "parentheses, pi, e, and sqrt, exp, log, log10, log2, sin, cos, tan, asin, "
        "acos, atan, abs, round, floor, ceil."
    ),
    parameters={
        "type": "object",
        "properties": {
            "expression": {"type": "string", "description": "e.g. '(17.5 * 3) / 4'"}
        },
        "required": ["expression"],
        "additionalProperties": False,
    },
    handler=calculator,
)


def builtin_registry() -> ToolRegistry:
    """A fresh registry holding the tools threadwise ships."""
    return ToolRegistry([CURRENT_TIME, CALCULATOR])
