"""Arbitrary rate-law expressions: a small expression tree, its symbolic derivatives, vectorized
evaluation and code generation for the compiled kernels.

An :class:`Expression` law holds a tree made of

* :class:`Num` (a float constant), :class:`Name` (a species or parameter by name, before the
  network resolves it), :class:`Species` and :class:`Param` (resolved to column indices),
  :class:`Time` (the simulation time; allowed in event triggers and assignments, rejected in
  kinetic laws), and
* :class:`Call` nodes: ``add sub mul div pow neg`` (binary / unary arithmetic), the functions
  ``exp ln log10 sqrt abs floor ceil sin cos tan sinh cosh tanh asin acos atan min max``,
  ``piecewise(v1, c1, v2, c2, ..., [otherwise])``, the relations ``lt le gt ge eq ne`` and the
  logical ``and or xor not true false``.

Trees are immutable and hashable. Build them from text with :func:`parse_expression`
(``"vmax * P^n / (K^n + P^n)"``), from SBML MathML (:mod:`cupyssa.sbml`), or with the Python
operators on nodes (``Name("k") * Name("X")``).

The law is taken literally: the propensity is the value of the tree, evaluated left to right as
written (no simplification), so the vectorized reference (:meth:`Expression.evaluate`, NumPy or
CuPy) and the code-generated scalar kernel function (:func:`propensity_source`) perform the same
floating-point operations. Derivatives (:meth:`Expression.grad_x`, :meth:`Expression.grad_theta`)
come from a small symbolic differentiator (:func:`differentiate`).

Code generation: :func:`kernel_functions_for` writes Python source for
``expression_propensity(j, x, theta)`` (an if-chain over the network's expression laws with scalar
``math`` calls) and its adjoint, keeps them in files (:mod:`cupyssa.codegen`, so that Numba caches
the compiled family on disk) and returns them by kernel global name;
:meth:`cupyssa.ReactionNetwork.kernel_functions` delegates here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from .codegen import load_function
from .errors import NetworkError
from .kernels import codes
from .ratelaws import RateLaw, _xp

__all__ = [
    "Node", "Num", "Name", "Species", "Param", "Time", "Call", "Expression",
    "parse_expression", "to_infix", "differentiate", "resolve_tree", "evaluate_tree",
    "evaluate_scalar", "symbols", "is_boolean", "substitute", "python_source",
    "propensity_source", "adjoint_source", "kernel_functions_for",
]


# -- tree -------------------------------------------------------------------------------------
class Node:
    """Base class of expression-tree nodes (immutable, hashable, structural equality)."""

    __slots__ = ()

    def __add__(self, other):
        return Call("add", (self, _node(other)))

    def __radd__(self, other):
        return Call("add", (_node(other), self))

    def __sub__(self, other):
        return Call("sub", (self, _node(other)))

    def __rsub__(self, other):
        return Call("sub", (_node(other), self))

    def __mul__(self, other):
        return Call("mul", (self, _node(other)))

    def __rmul__(self, other):
        return Call("mul", (_node(other), self))

    def __truediv__(self, other):
        return Call("div", (self, _node(other)))

    def __rtruediv__(self, other):
        return Call("div", (_node(other), self))

    def __pow__(self, other):
        return Call("pow", (self, _node(other)))

    def __rpow__(self, other):
        return Call("pow", (_node(other), self))

    def __neg__(self):
        return Call("neg", (self,))

    def __str__(self) -> str:
        return to_infix(self)


@dataclass(frozen=True, slots=True)
class Num(Node):
    """A constant."""

    value: float

    def __post_init__(self):
        object.__setattr__(self, "value", float(self.value))

    def __repr__(self) -> str:
        return f"Num({self.value!r})"


@dataclass(frozen=True, slots=True)
class Name(Node):
    """A species or parameter named ``name`` (unresolved)."""

    name: str

    def __repr__(self) -> str:
        return f"Name({self.name!r})"


@dataclass(frozen=True, slots=True)
class Species(Node):
    """Population of species column ``index`` (read as a float)."""

    index: int

    def __repr__(self) -> str:
        return f"Species({self.index})"


@dataclass(frozen=True, slots=True)
class Param(Node):
    """Parameter ``theta[index]``."""

    index: int

    def __repr__(self) -> str:
        return f"Param({self.index})"


@dataclass(frozen=True, slots=True)
class Time(Node):
    """The simulation time."""

    def __repr__(self) -> str:
        return "Time()"


@dataclass(frozen=True, slots=True)
class Call(Node):
    """Operator or function ``op`` applied to ``args``."""

    op: str
    args: tuple

    def __post_init__(self):
        if self.op not in _ARITY:
            raise NetworkError(f"unknown expression operator or function {self.op!r}; known: "
                               f"{sorted(_ARITY)}")
        args = tuple(_node(a) for a in self.args)
        lo, hi = _ARITY[self.op]
        if not lo <= len(args) <= hi:
            want = str(lo) if lo == hi else f"{lo} or more" if hi == _MANY else f"{lo} to {hi}"
            raise NetworkError(f"{self.op} takes {want} arguments, got {len(args)}")
        object.__setattr__(self, "args", args)

    def __repr__(self) -> str:
        return f"Call({self.op!r}, {self.args!r})"


def _node(value) -> Node:
    if isinstance(value, Node):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return Num(float(value))
    if isinstance(value, str):
        return parse_expression(value)
    raise NetworkError(f"cannot make an expression from {value!r}")


_MANY = 1 << 30
_UNARY = ("neg", "exp", "ln", "log10", "sqrt", "abs", "floor", "ceil", "sin", "cos", "tan",
          "sinh", "cosh", "tanh", "asin", "acos", "atan", "sign")
_BINARY = ("add", "sub", "mul", "div", "pow", "min", "max")
_RELATIONS = ("lt", "le", "gt", "ge", "eq", "ne")
_LOGICAL = ("and", "or", "xor")
_ARITY = {**{op: (1, 1) for op in _UNARY}, **{op: (2, 2) for op in _BINARY + _RELATIONS + _LOGICAL},
          "not": (1, 1), "true": (0, 0), "false": (0, 0), "piecewise": (1, _MANY)}
_BOOLEAN_OPS = frozenset(_RELATIONS + _LOGICAL + ("not", "true", "false"))


def is_boolean(node: Node) -> bool:
    """Whether ``node`` is a condition (relation, logical operator, true/false)."""
    return isinstance(node, Call) and node.op in _BOOLEAN_OPS


def _children(node: Node) -> tuple:
    return node.args if isinstance(node, Call) else ()


def walk(node: Node) -> Iterable[Node]:
    """Every node of the tree, depth first."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(_children(n)))


def symbols(node: Node) -> set:
    """The leaves of ``node`` that are not constants (Name, Species, Param, Time nodes)."""
    return {n for n in walk(node) if isinstance(n, (Name, Species, Param, Time))}


def substitute(node: Node, mapping: Mapping[Node, Node] | Callable[[Node], Node | None]) -> Node:
    """Replace leaves: ``mapping`` maps a leaf to its replacement (a dict, or a function that
    returns ``None`` to keep the leaf)."""
    get = mapping.get if isinstance(mapping, Mapping) else mapping

    def sub(n):
        if isinstance(n, Call):
            args = tuple(sub(a) for a in n.args)
            return n if all(a is b for a, b in zip(args, n.args)) else Call(n.op, args)
        new = get(n)
        return n if new is None else new

    return sub(node)


def resolve_tree(node: Node, species_index: Mapping[str, int], parameter_index: Mapping[str, int],
                 *, allow_time: bool = False, context: str = "expression") -> Node:
    """Replace :class:`Name` leaves by :class:`Species` / :class:`Param` indices.

    Raises
    ------
    NetworkError
        An unknown name, or time where ``allow_time`` is false.
    """
    def leaf(n):
        if isinstance(n, Name):
            if n.name in species_index:
                return Species(int(species_index[n.name]))
            if n.name in parameter_index:
                return Param(int(parameter_index[n.name]))
            raise NetworkError(f"{context}: unknown species or parameter {n.name!r}")
        if isinstance(n, Time) and not allow_time:
            raise NetworkError(f"{context} depends on time; time-dependent propensities are not "
                               "supported by the exact simulator (use events to change parameters "
                               "at given times)")
        return None

    return substitute(node, leaf)


# -- text: parse and print ---------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op>\*\*|<=|>=|==|!=|&&|\|\||[-+*/^(),<>!]))")
_FUNCTIONS = {"exp": "exp", "ln": "ln", "log": "ln", "log10": "log10", "sqrt": "sqrt", "abs": "abs",
              "floor": "floor", "ceil": "ceil", "ceiling": "ceil", "sin": "sin", "cos": "cos",
              "tan": "tan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "asin": "asin",
              "acos": "acos", "atan": "atan", "arcsin": "asin", "arccos": "acos", "arctan": "atan",
              "min": "min", "max": "max", "pow": "pow", "piecewise": "piecewise",
              "lt": "lt", "leq": "le", "gt": "gt", "geq": "ge", "eq": "eq", "neq": "ne",
              "and": "and", "or": "or", "xor": "xor", "not": "not"}
_CONSTANTS = {"pi": math.pi, "exponentiale": math.e, "inf": math.inf, "INF": math.inf,
              "infinity": math.inf, "nan": math.nan, "NaN": math.nan}


def parse_expression(text: str) -> Node:
    """Parse an infix expression.

    Grammar (usual precedence, ``^`` / ``**`` right-associative and above unary minus):
    numbers, names, ``time``, ``pi``, ``true``, ``false``, ``+ - * / ^ **``, relations
    ``< <= > >= == !=``, ``&& || !``, and the calls ``exp ln log (natural) log10 sqrt abs floor
    ceil sin cos tan sinh cosh tanh asin acos atan min max pow piecewise(v1, c1, ..., [otherwise])``
    (n-ary ``min``, ``max`` fold from the left). Unknown names are species or parameters,
    resolved later by the network.

    Raises
    ------
    NetworkError
        A syntax error, naming the position.
    """
    if not isinstance(text, str):
        raise NetworkError(f"expected an expression string, got {text!r}")
    tokens = []
    pos = 0
    text_stripped = text.rstrip()
    while pos < len(text_stripped):
        m = _TOKEN.match(text_stripped, pos)
        if not m:
            raise NetworkError(f"cannot read the expression {text!r} at {text_stripped[pos:]!r}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return _Parser(tokens, text).parse()


class _Parser:
    def __init__(self, tokens, text):
        self.tokens = tokens
        self.i = 0
        self.text = text

    def error(self, what):
        where = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        return NetworkError(f"expression {self.text!r}: {what} at position {where}")

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None, None)

    def take(self, value=None):
        tok = self.peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            raise self.error(f"expected {value!r}" if value else "unexpected end")
        self.i += 1
        return tok

    def accept(self, *values):
        tok = self.peek()
        if tok[0] == "op" and tok[1] in values:
            self.i += 1
            return tok[1]
        return None

    def parse(self):
        node = self.or_()
        if self.i != len(self.tokens):
            raise self.error(f"unexpected {self.peek()[1]!r}")
        return node

    def or_(self):
        node = self.and_()
        while self.accept("||"):
            node = Call("or", (node, self.and_()))
        return node

    def and_(self):
        node = self.not_()
        while self.accept("&&"):
            node = Call("and", (node, self.not_()))
        return node

    def not_(self):
        if self.accept("!"):
            return Call("not", (self.not_(),))
        return self.relation()

    def relation(self):
        node = self.sum()
        ops = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}
        op = self.accept(*ops)
        if op:
            node = Call(ops[op], (node, self.sum()))
        return node

    def sum(self):
        node = self.product()
        while True:
            op = self.accept("+", "-")
            if not op:
                return node
            node = Call("add" if op == "+" else "sub", (node, self.product()))

    def product(self):
        node = self.unary()
        while True:
            op = self.accept("*", "/")
            if not op:
                return node
            node = Call("mul" if op == "*" else "div", (node, self.unary()))

    def unary(self):
        op = self.accept("-", "+")
        if op == "-":
            operand = self.unary()
            return Num(-operand.value) if isinstance(operand, Num) else Call("neg", (operand,))
        if op == "+":
            return self.unary()
        return self.power()

    def power(self):
        node = self.atom()
        if self.accept("^", "**"):
            return Call("pow", (node, self.unary()))
        return node

    def atom(self):
        kind, value, _ = self.peek()
        if kind == "num":
            self.i += 1
            return Num(float(value))
        if kind == "name":
            self.i += 1
            if self.accept("("):
                args = []
                if not self.accept(")"):
                    while True:
                        args.append(self.or_())
                        if self.accept(")"):
                            break
                        self.take(",")
                return self.call(value, args)
            if value == "time":
                return Time()
            if value == "true":
                return Call("true", ())
            if value == "false":
                return Call("false", ())
            if value in _CONSTANTS:
                return Num(_CONSTANTS[value])
            return Name(value)
        if self.accept("("):
            node = self.or_()
            self.take(")")
            return node
        raise self.error("expected a number, a name or '('" if kind else "unexpected end")

    def call(self, name, args):
        op = _FUNCTIONS.get(name)
        if op is None:
            raise self.error(f"unknown function {name!r}; known: {sorted(_FUNCTIONS)}")
        if op in ("min", "max", "and", "or") and len(args) > 2:
            node = args[0]
            for a in args[1:]:
                node = Call(op, (node, a))
            return node
        return Call(op, tuple(args))


_INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2)}
_REL_TEXT = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def to_infix(node: Node, species: Sequence[str] | None = None,
             parameters: Sequence[str] | None = None) -> str:
    """Infix text of ``node`` that :func:`parse_expression` reads back to the same tree
    (resolved leaves are printed by name when ``species`` / ``parameters`` are given, else as
    ``x[i]`` / ``theta[p]``, which do not parse back)."""
    def text(n, prec=0):
        if isinstance(n, Num):
            v = n.value
            if math.isnan(v):
                s = "nan"
            elif math.isinf(v):
                s = "inf" if v > 0 else "(-inf)"
            else:
                s = repr(v)
                if v < 0:
                    s = f"({s})"
            return s
        if isinstance(n, Name):
            return n.name
        if isinstance(n, Species):
            return species[n.index] if species is not None else f"x[{n.index}]"
        if isinstance(n, Param):
            return parameters[n.index] if parameters is not None else f"theta[{n.index}]"
        if isinstance(n, Time):
            return "time"
        op, a = n.op, n.args
        if op in _INFIX:
            sym, p = _INFIX[op]
            # left-associative: the right operand needs parentheses at equal precedence
            s = f"{text(a[0], p)} {sym} {text(a[1], p + 1)}"
            return f"({s})" if p < prec else s
        if op == "pow":
            s = f"{text(a[0], 5)}^{text(a[1], 4)}"
            return f"({s})" if prec > 3 else s
        if op == "neg":
            s = f"-{text(a[0], 4)}"
            return f"({s})" if prec > 3 else s
        if op in _REL_TEXT:
            return f"({text(a[0], 1)} {_REL_TEXT[op]} {text(a[1], 1)})"
        if op == "and":
            return f"({text(a[0])} && {text(a[1])})"
        if op == "or":
            return f"({text(a[0])} || {text(a[1])})"
        if op == "not":
            return f"!{text(a[0], 9)}"
        if op in ("true", "false"):
            return op
        name = {"ceil": "ceil", "ln": "ln"}.get(op, op)
        return f"{name}({', '.join(text(x) for x in a)})"

    return text(node)


# -- evaluation --------------------------------------------------------------------------------
_NP_UNARY = {"exp": "exp", "ln": "log", "log10": "log10", "sqrt": "sqrt", "abs": "abs",
             "floor": "floor", "ceil": "ceil", "sin": "sin", "cos": "cos", "tan": "tan",
             "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "asin": "arcsin", "acos": "arccos",
             "atan": "arctan", "sign": "sign"}


def evaluate_tree(node: Node, x, theta, t=None):
    """Vectorized value of a resolved tree: ``x [..., S]``, ``theta [..., P]``, ``t`` scalar or
    ``[...]`` (needed only if the tree reads time). Conditions give boolean arrays; everything
    else float64 (NumPy or CuPy, following ``x``). Floating-point warnings are the caller's."""
    xp = _xp(x)

    def num(n):
        v = ev(n)
        return v.astype(float) if is_boolean(n) else v

    def cond(n):
        v = ev(n)
        return v if is_boolean(n) else (v != 0.0)

    def ev(n):
        if isinstance(n, Num):
            return n.value
        if isinstance(n, Species):
            return x[..., n.index].astype(float)
        if isinstance(n, Param):
            return theta[..., n.index]
        if isinstance(n, Time):
            if t is None:
                raise NetworkError("the expression reads time, but no time was given")
            return xp.asarray(t, dtype=float)
        if isinstance(n, Name):
            raise NetworkError(f"unresolved name {n.name!r} in the expression")
        op, a = n.op, n.args
        if op == "add":
            return num(a[0]) + num(a[1])
        if op == "sub":
            return num(a[0]) - num(a[1])
        if op == "mul":
            return num(a[0]) * num(a[1])
        if op == "div":
            return xp.true_divide(num(a[0]), num(a[1]))
        if op == "pow":
            return xp.power(xp.asarray(num(a[0]), dtype=float), num(a[1]))
        if op == "neg":
            return -xp.asarray(num(a[0]), dtype=float)
        if op in _NP_UNARY:
            return getattr(xp, _NP_UNARY[op])(xp.asarray(num(a[0]), dtype=float))
        if op == "min":
            return xp.minimum(num(a[0]), num(a[1]))
        if op == "max":
            return xp.maximum(num(a[0]), num(a[1]))
        if op == "piecewise":
            pairs = [(a[i], a[i + 1]) for i in range(0, len(a) - 1, 2)]
            out = num(a[-1]) if len(a) % 2 else math.nan
            for value, c in reversed(pairs):
                out = xp.where(cond(c), num(value), out)
            return out
        if op in _REL_TEXT:
            u, v = num(a[0]), num(a[1])
            return {"lt": xp.less, "le": xp.less_equal, "gt": xp.greater, "ge": xp.greater_equal,
                    "eq": xp.equal, "ne": xp.not_equal}[op](u, v)
        if op == "and":
            return xp.logical_and(cond(a[0]), cond(a[1]))
        if op == "or":
            return xp.logical_or(cond(a[0]), cond(a[1]))
        if op == "xor":
            return xp.logical_xor(cond(a[0]), cond(a[1]))
        if op == "not":
            return xp.logical_not(cond(a[0]))
        if op == "true":
            return xp.asarray(True)
        if op == "false":
            return xp.asarray(False)
        raise NetworkError(f"cannot evaluate {op!r}")  # pragma: no cover

    return ev(node)


def evaluate_scalar(node: Node, values: Mapping[str, float], t: float = 0.0) -> float:
    """Value of a tree whose leaves are :class:`Name` (looked up in ``values``), :class:`Num` and
    :class:`Time` (``t``), as a Python float (conditions as 1.0 / 0.0).

    Raises
    ------
    KeyError
        A name missing from ``values`` (its name is the key).
    """
    def leaf(n):
        if isinstance(n, Name):
            if n.name not in values:
                raise KeyError(n.name)
            return Num(values[n.name])
        if isinstance(n, Time):
            return Num(t)
        return None

    tree = substitute(node, leaf)
    with np.errstate(all="ignore"):
        v = evaluate_tree(tree, np.zeros(1), np.zeros(1))
    return float(np.asarray(v, dtype=float))


# -- symbolic differentiation ------------------------------------------------------------------
_ZERO, _ONE = Num(0.0), Num(1.0)


def _is(n, value):
    return isinstance(n, Num) and n.value == value


def _fold(op, *args):
    """``Call(op, args)`` with constant folding and the identities of 0 and 1."""
    if all(isinstance(a, Num) for a in args) and op in ("add", "sub", "mul", "div", "neg", "pow"):
        with np.errstate(all="ignore"):
            return Num(float(evaluate_tree(Call(op, args), np.zeros(1), np.zeros(1))))
    if op == "add":
        if _is(args[0], 0.0):
            return args[1]
        if _is(args[1], 0.0):
            return args[0]
    elif op == "sub":
        if _is(args[1], 0.0):
            return args[0]
        if _is(args[0], 0.0):
            return _fold("neg", args[1])
    elif op == "mul":
        if _is(args[0], 0.0) or _is(args[1], 0.0):
            return _ZERO
        if _is(args[0], 1.0):
            return args[1]
        if _is(args[1], 1.0):
            return args[0]
    elif op == "div":
        if _is(args[0], 0.0):
            return _ZERO
        if _is(args[1], 1.0):
            return args[0]
    elif op == "neg":
        if isinstance(args[0], Call) and args[0].op == "neg":
            return args[0].args[0]
    elif op == "pow":
        if _is(args[1], 1.0):
            return args[0]
        if _is(args[1], 0.0):
            return _ONE
    return Call(op, tuple(args))


def differentiate(node: Node, var: Node) -> Node:
    """Symbolic derivative ``d node / d var`` (``var`` a leaf: Species, Param or Name), lightly
    simplified. Conditions have derivative 0; ``piecewise`` differentiates branch by branch;
    ``floor``/``ceil`` have derivative 0 (almost everywhere); ``|u|' = sign(u) u'``;
    ``d/dv u^v = u^v ln(u) v'`` where ``u > 0`` and 0 elsewhere (the continuous extension at
    ``u = 0``)."""
    memo: dict = {}

    def d(n):
        key = id(n)
        if key in memo:
            return memo[key][1]
        out = _d(n)
        memo[key] = (n, out)
        return out

    def depends(n):
        return var in symbols(n)

    def _d(n):
        if isinstance(n, (Num, Time)):
            return _ZERO
        if isinstance(n, (Name, Species, Param)):
            return _ONE if n == var else _ZERO
        op, a = n.op, n.args
        if op in _BOOLEAN_OPS:
            return _ZERO
        if op in ("add", "sub"):
            return _fold(op, d(a[0]), d(a[1]))
        if op == "neg":
            return _fold("neg", d(a[0]))
        if op == "mul":
            return _fold("add", _fold("mul", d(a[0]), a[1]), _fold("mul", a[0], d(a[1])))
        if op == "div":
            u, v = a
            du, dv = d(u), d(v)
            if _is(dv, 0.0):
                return _fold("div", du, v)
            return _fold("div", _fold("sub", _fold("mul", du, v), _fold("mul", u, dv)),
                         _fold("pow", v, Num(2.0)))
        if op == "pow":
            u, v = a
            out = _ZERO
            du = d(u)
            if not _is(du, 0.0):
                out = _fold("mul", _fold("mul", v, _fold("pow", u, _fold("sub", v, _ONE))), du)
            if depends(v):
                dv = d(v)
                term = Call("piecewise", (_fold("mul", n, Call("ln", (u,))),
                                          Call("gt", (u, _ZERO)), _ZERO))
                out = _fold("add", out, _fold("mul", term, dv))
            return out
        u = a[0]
        du = d(u) if a else _ZERO
        if op in ("floor", "ceil", "sign"):
            return _ZERO
        if op in ("min", "max"):
            u, v = a
            pick = Call("le" if op == "min" else "ge", (u, v))
            return _fold_piecewise(d(u), pick, d(v))
        if op == "piecewise":
            parts = list(a)
            for i in range(0, len(parts) - 1, 2):
                parts[i] = d(parts[i])
            if len(parts) % 2:
                parts[-1] = d(parts[-1])
            else:
                parts.append(_ZERO)
            return Call("piecewise", tuple(parts))
        if _is(du, 0.0):
            return _ZERO
        outer = {
            "exp": lambda: n,
            "ln": lambda: _fold("div", _ONE, u),
            "log10": lambda: _fold("div", _ONE, _fold("mul", u, Num(math.log(10.0)))),
            "sqrt": lambda: _fold("div", _ONE, _fold("mul", Num(2.0), n)),
            "abs": lambda: Call("sign", (u,)),
            "sin": lambda: Call("cos", (u,)),
            "cos": lambda: _fold("neg", Call("sin", (u,))),
            "tan": lambda: _fold("add", _ONE, _fold("pow", n, Num(2.0))),
            "sinh": lambda: Call("cosh", (u,)),
            "cosh": lambda: Call("sinh", (u,)),
            "tanh": lambda: _fold("sub", _ONE, _fold("pow", n, Num(2.0))),
            "asin": lambda: _fold("div", _ONE, _sqrt_one_minus_square(u)),
            "acos": lambda: _fold("neg", _fold("div", _ONE, _sqrt_one_minus_square(u))),
            "atan": lambda: _fold("div", _ONE, _fold("add", _ONE, _fold("pow", u, Num(2.0)))),
        }[op]()
        return _fold("mul", outer, du)

    return d(node)


def _sqrt_one_minus_square(u):
    return Call("sqrt", (_fold("sub", _ONE, _fold("pow", u, Num(2.0))),))


def _fold_piecewise(a, c, b):
    if a == b:
        return a
    return Call("piecewise", (a, c, b))


# -- the rate law ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expression(RateLaw):
    """A rate law given by an arbitrary expression (e.g. an SBML kinetic law), taken literally:
    the propensity is the expression's value (it is not multiplied by reactant counts).

    Parameters
    ----------
    expr : Node or str
        The expression; a string is parsed with :func:`parse_expression`. Names are species or
        parameters of the network (resolved when the reaction is added). Time is not allowed.

    Examples
    --------
    >>> from cupyssa import ReactionNetwork
    >>> net = ReactionNetwork().add_species("P").add_parameter("b", 2.0)
    >>> net = net.add_parameter("vmax", 10.0).add_parameter("K", 15.0).add_parameter("n", 2.0)
    >>> net = net.add_reaction({}, {"P": 1}, Expression("b + vmax * P^n / (K^n + P^n)"))
    >>> float(net.propensities(np.array([15]), net.parameter_vector())[0])
    7.0
    """

    expr: object
    code = codes.EXPRESSION

    def __post_init__(self):
        object.__setattr__(self, "expr", _node(self.expr))

    def species_names(self) -> tuple:
        return tuple(sorted({n.name if isinstance(n, Name) else n.index for n in symbols(self.expr)
                             if isinstance(n, (Name, Species))}, key=str))

    def parameter_names(self) -> tuple:
        return tuple(sorted({n.name if isinstance(n, Name) else n.index for n in symbols(self.expr)
                             if isinstance(n, (Name, Param))}, key=str))

    def resolve(self, species_index, parameter_index, reactants) -> "Expression":
        tree = resolve_tree(self.expr, species_index, parameter_index,
                            context=f"rate law {to_infix(self.expr)!r}")
        return Expression(tree, reactants=tuple(reactants))

    def signed_parameters(self) -> tuple:
        """Every parameter of an expression may have any sign (the law is taken literally; the
        kernels check that the propensity itself is finite and non-negative)."""
        return self.parameter_names()

    def reads(self) -> tuple:
        """Species whose change can alter the propensity: those in the expression."""
        return tuple(sorted(n.index for n in symbols(self.expr) if isinstance(n, Species)))

    def encode(self):
        return self.code, 0, (), (), ()

    def _check_resolved(self):
        if any(isinstance(n, Name) for n in symbols(self.expr)):
            raise NetworkError(f"rate law {to_infix(self.expr)!r} is not resolved: add it to a "
                               "network first")

    def evaluate(self, x, theta):
        self._check_resolved()
        xp = _xp(x)
        shape = np.broadcast_shapes(x.shape[:-1], theta.shape[:-1])
        with np.errstate(all="ignore"):
            v = evaluate_tree(self.expr, x, theta)
        v = xp.asarray(v, dtype=float)
        return xp.broadcast_to(v, shape) if v.shape != shape else v

    @cached_property
    def _dx(self) -> tuple:
        return tuple((s, differentiate(self.expr, Species(s))) for s in self.reads())

    @cached_property
    def _dtheta(self) -> tuple:
        ps = sorted(n.index for n in symbols(self.expr) if isinstance(n, Param))
        return tuple((p, differentiate(self.expr, Param(p))) for p in ps)

    def _grads(self, trees, x, theta):
        self._check_resolved()
        xp = _xp(x)
        shape = np.broadcast_shapes(x.shape[:-1], theta.shape[:-1])
        out = []
        with np.errstate(all="ignore"):
            for i, tree in trees:
                v = xp.asarray(evaluate_tree(tree, x, theta), dtype=float)
                out.append((i, xp.broadcast_to(v, shape) if v.shape != shape else v))
        return out

    def grad_x(self, x, theta):
        """``[(species, da/dx_s)]`` by symbolic differentiation (continuous extension)."""
        return self._grads(self._dx, x, theta)

    def grad_theta(self, x, theta):
        """``[(parameter, da/dtheta_p)]`` by symbolic differentiation."""
        return self._grads(self._dtheta, x, theta)

    def __str__(self) -> str:
        return to_infix(self.expr)


# -- code generation ---------------------------------------------------------------------------
_MATH_UNARY = {"exp": "math.exp", "ln": "math.log", "log10": "math.log10", "sqrt": "math.sqrt",
               "abs": "abs", "floor": "np.floor", "ceil": "np.ceil", "sin": "math.sin",
               "cos": "math.cos", "tan": "math.tan", "sinh": "math.sinh", "cosh": "math.cosh",
               "tanh": "math.tanh", "asin": "math.asin", "acos": "math.acos", "atan": "math.atan"}


def python_source(node: Node, x: str = "x", theta: str = "theta", t: str = "t") -> str:
    """Scalar Python source of a resolved tree (Numba-compilable; same operation order as
    :func:`evaluate_tree`). Species read as ``float(x[i])``; conditions are Python booleans."""
    def num(n):
        s = src(n)
        return f"(1.0 if {s} else 0.0)" if is_boolean(n) else s

    def cond(n):
        s = src(n)
        return s if is_boolean(n) else f"({s} != 0.0)"

    def src(n):
        if isinstance(n, Num):
            v = n.value
            if math.isnan(v):
                return "math.nan"
            if math.isinf(v):
                return "math.inf" if v > 0 else "(-math.inf)"
            return f"({v!r})" if v < 0 else repr(v)
        if isinstance(n, Species):
            return f"float({x}[{n.index}])"
        if isinstance(n, Param):
            return f"{theta}[{n.index}]"
        if isinstance(n, Time):
            return t
        if isinstance(n, Name):
            raise NetworkError(f"unresolved name {n.name!r} in generated code")
        op, a = n.op, n.args
        if op in _INFIX:
            return f"({num(a[0])} {_INFIX[op][0]} {num(a[1])})"
        if op == "pow":
            return f"({num(a[0])} ** {num(a[1])})"
        if op == "neg":
            return f"(-{num(a[0])})"
        if op in _MATH_UNARY:
            return f"{_MATH_UNARY[op]}({num(a[0])})"
        if op == "sign":
            u = num(a[0])
            return f"(1.0 if {u} > 0.0 else (-1.0 if {u} < 0.0 else 0.0))"
        if op in ("min", "max"):
            return f"{op}({num(a[0])}, {num(a[1])})"
        if op == "piecewise":
            out = num(a[-1]) if len(a) % 2 else "math.nan"
            for i in reversed(range(0, len(a) - 1, 2)):
                out = f"({num(a[i])} if {cond(a[i + 1])} else {out})"
            return out
        if op in _REL_TEXT:
            return f"({num(a[0])} {_REL_TEXT[op]} {num(a[1])})"
        if op == "and":
            return f"({cond(a[0])} and {cond(a[1])})"
        if op == "or":
            return f"({cond(a[0])} or {cond(a[1])})"
        if op == "xor":
            return f"({cond(a[0])} != {cond(a[1])})"
        if op == "not":
            return f"(not {cond(a[0])})"
        if op == "true":
            return "True"
        if op == "false":
            return "False"
        raise NetworkError(f"cannot generate code for {op!r}")  # pragma: no cover

    return src(node)


def propensity_source(network) -> str:
    """Python source of ``expression_propensity(j, x, theta)`` for ``network``: an if-chain over
    the reactions whose law is an :class:`Expression` (other ``j`` give NaN)."""
    lines = ["def expression_propensity(j, x, theta):"]
    for j, r in enumerate(network.reactions):
        if isinstance(r.law, Expression):
            lines.append(f"    if j == {j}:")
            lines.append(f"        return {num_source(r.law.expr)}")
    lines.append("    return math.nan")
    return "\n".join(lines) + "\n"


def adjoint_source(network) -> str:
    """Python source of ``expression_adjoint(j, x, theta, abar, xbar, gbar, with_x)``: for the
    expression law of reaction ``j``, ``gbar[p] += abar * da_j/dtheta_p`` and, when ``with_x``,
    ``xbar[s] += abar * da_j/dx_s`` (the symbolic derivatives of :meth:`Expression.grad_theta`
    and :meth:`Expression.grad_x`, evaluated in the same operation order)."""
    lines = ["def expression_adjoint(j, x, theta, abar, xbar, gbar, with_x):"]
    for j, r in enumerate(network.reactions):
        if isinstance(r.law, Expression):
            lines.append(f"    if j == {j}:")
            for p, tree in r.law._dtheta:
                lines.append(f"        gbar[{p}] += abar * {num_source(tree)}")
            if r.law._dx:
                lines.append("        if with_x:")
                for sp, tree in r.law._dx:
                    lines.append(f"            xbar[{sp}] += abar * {num_source(tree)}")
            lines.append("        return")
    lines.append("    gbar[0] += math.nan")
    return "\n".join(lines) + "\n"


def num_source(node: Node, **names) -> str:
    """Like :func:`python_source`, but conditions are converted to 1.0 / 0.0."""
    s = python_source(node, **names)
    return f"(1.0 if {s} else 0.0)" if is_boolean(node) else s


def kernel_functions_for(network) -> dict:
    """``{"expression_propensity": fn, "expression_adjoint": fn}`` for a network with
    :class:`Expression` laws, else ``{}``.

    The dictionary is memoized on the network (the same object is returned while the reactions
    are unchanged), which is what lets :func:`cupyssa.backends.cpu.kernels_for` reuse the compiled
    kernel family.
    """
    reactions = network.reactions
    if not any(isinstance(r.law, Expression) for r in reactions):
        return {}
    cached = network.__dict__.get("_expression_kernel_functions")
    if cached is not None and len(cached[0]) == len(reactions) and all(
            a is b for a, b in zip(cached[0], reactions)):
        return cached[1]
    functions = {
        "expression_propensity": load_function(propensity_source(network), "expression_propensity"),
        "expression_adjoint": load_function(adjoint_source(network), "expression_adjoint"),
    }
    network.__dict__["_expression_kernel_functions"] = (reactions, functions)
    return functions
