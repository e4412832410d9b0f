"""The text format of reaction networks.

One statement per line; ``#`` starts a comment::

    # reversible dimerization
    k1 = 1e-3                     # parameter with a default value
    init A = 1000                 # default initial count
    2 A -> B ; k1                 # mass action, rate constant k1
    B -> 2 A ; k2
    0 -> X ; 5.0                  # mass action with a literal constant
    A <-> C ; kf, kb              # reversible: two mass-action reactions
    G -> G + P ; hill(P, vmax, K, n)        # Hill activation by P
    G -> G + P ; hillr(P, vmax, K, n)       # Hill repression by P
    S -> Q ; mm(S, vmax, Km)                # Michaelis-Menten in S
    0 -> Y ; neural(sigmoid, k, b, w1*X, w2*P)   # k * sigmoid(b + w1 X + w2 P)
    0 -> Z ; expr(k * Z^2 / (K^2 + Z^2) + b)     # any expression (cupyssa.expressions)
    degY: Y -> 0 ; g              # optional reaction name before a colon

Species are declared by first use; parameters by first use or by ``name = value``. Non-mass-
action laws give the whole propensity as written (they are not multiplied by reactant counts).
In ``expr(...)`` a name is a species if it was used as one on this or an earlier line, else a
parameter.
"""

from __future__ import annotations

import re

from .errors import NetworkError, ParseError
from .ratelaws import Hill, HillRepression, MassAction, MichaelisMenten, Neural

__all__ = ["parse_network"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TERM = re.compile(rf"^\s*(?:({_NUMBER})\s*\*?\s*)?({_IDENT})\s*$")
_ASSIGN = re.compile(rf"^\s*(init\s+)?({_IDENT})\s*=\s*(\S+)\s*$")
_CALL = re.compile(rf"^\s*({_IDENT})\s*\((.*)\)\s*$")
_LABEL = re.compile(rf"^\s*({_IDENT})\s*:(.*)$")

#: law name -> (class, number of species arguments first, number of parameter arguments)
_LAWS = {
    "hill": (Hill, 1, 3),
    "hillr": (HillRepression, 1, 3),
    "mm": (MichaelisMenten, 1, 2),
}


class _Builder:
    def __init__(self, net):
        self.net = net
        self.anon = 0

    def species(self, name):
        if name not in self.net.species:
            self.net.add_species(name)
        return name

    def parameter(self, token, reaction, slot):
        """A parameter name (declared on first use) or a literal number (stored as a parameter)."""
        if re.fullmatch(_IDENT, token):
            if token in self.net.species:
                raise NetworkError(f"{token!r} is a species, but a parameter is expected here")
            if token not in self.net.parameters:
                self.net.add_parameter(token)
            return token
        try:
            value = float(token)
        except ValueError:
            raise NetworkError(f"expected a parameter name or a number, got {token!r}") from None
        name = f"{reaction}_{slot}"
        self.net.add_parameter(name, value)
        return name


def _side(text: str, b: _Builder) -> dict:
    text = text.strip()
    if text in ("", "0", "∅"):
        return {}
    terms: dict[str, float] = {}
    for term in text.split("+"):
        m = _TERM.match(term)
        if not m:
            raise NetworkError(f"cannot read the species term {term.strip()!r}")
        coeff = float(m.group(1)) if m.group(1) else 1.0
        if not coeff.is_integer() or coeff < 0:
            raise NetworkError(f"stoichiometric coefficient {m.group(1)} of {m.group(2)!r} is "
                               "not a non-negative integer")
        name = b.species(m.group(2))
        terms[name] = terms.get(name, 0) + int(coeff)
    return terms


def _law(text: str, b: _Builder, reaction: str):
    text = text.strip()
    call = _CALL.match(text)
    if not call:
        return MassAction(b.parameter(text, reaction, "k"))
    fname, args = call.group(1), [a.strip() for a in call.group(2).split(",")]
    if fname == "expr":
        from .expressions import Expression, Name, parse_expression, walk

        tree = parse_expression(call.group(2))
        for leaf in walk(tree):  # declare new parameters in order of appearance
            if isinstance(leaf, Name) and leaf.name not in b.net.species:
                b.parameter(leaf.name, reaction, leaf.name)
        return Expression(tree)
    if fname == "neural":
        if len(args) < 3:
            raise NetworkError("neural(f, k, b, w1*X1, ...) needs a nonlinearity, k and b")
        k, bias = b.parameter(args[1], reaction, "k"), b.parameter(args[2], reaction, "b")
        weights = []
        for i, term in enumerate(args[3:]):
            m = re.fullmatch(rf"({_IDENT}|{_NUMBER})\s*\*\s*({_IDENT})", term)
            if not m:
                raise NetworkError(f"neural regulator {term!r} is not of the form weight*species")
            weights.append((b.parameter(m.group(1), reaction, f"w{i}"), b.species(m.group(2))))
        return Neural(k, bias, weights, f=args[0])
    if fname not in _LAWS:
        raise NetworkError(f"unknown rate law {fname!r}; known: {sorted(_LAWS) + ['expr', 'neural']}")
    cls, n_species, n_params = _LAWS[fname]
    if len(args) != n_species + n_params:
        raise NetworkError(f"{fname} takes {n_species + n_params} arguments, got {len(args)}")
    species = [b.species(a) for a in args[:n_species]]
    params = [b.parameter(a, reaction, f)
              for a, f in zip(args[n_species:], cls.parameter_fields)]
    return cls(*species, *params)


def parse_network(text: str, net):
    """Read the text format (module docstring) into the empty network ``net``; returns it."""
    b = _Builder(net)
    pending_defaults = []
    for number, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        try:
            assign = _ASSIGN.match(body)
            if assign and "->" not in body:
                pending_defaults.append((bool(assign.group(1)), assign.group(2), assign.group(3),
                                         number, line))
                continue
            label = _LABEL.match(body)
            name = None
            if label and "->" in label.group(2):
                name, body = label.group(1), label.group(2)
            if ";" not in body:
                raise NetworkError("expected 'reactants -> products ; law'")
            equation, law_text = body.split(";", 1)
            reversible = "<->" in equation
            arrow = "<->" if reversible else "->"
            if equation.count(arrow) != 1 or (not reversible and "<" in equation):
                raise NetworkError("expected exactly one '->' or '<->'")
            lhs, rhs = equation.split(arrow)
            name = name or f"R{len(net.reactions)}"
            reactants, products = _side(lhs, b), _side(rhs, b)
            if reversible:
                laws = [s for s in _split_top(law_text)]
                if len(laws) != 2:
                    raise NetworkError("a reversible reaction '<->' needs two laws: 'forward, backward'")
                net.add_reaction(reactants, products, _law(laws[0], b, name + "_f"), name=name + "_f")
                net.add_reaction(products, reactants, _law(laws[1], b, name + "_b"), name=name + "_b")
            else:
                net.add_reaction(reactants, products, _law(law_text, b, name), name=name)
        except ParseError:
            raise
        except NetworkError as exc:
            raise ParseError(str(exc), number, line) from None
    for is_init, name, value, number, line in pending_defaults:
        try:
            if is_init:
                if name not in net.species:
                    raise NetworkError(f"init of unknown species {name!r}")
            elif name not in net.parameters:
                if name in net.species:
                    raise NetworkError(f"{name!r} is a species; write 'init {name} = ...'")
                net.add_parameter(name)
            net.set_default(name, float(value))
        except (NetworkError, ValueError) as exc:
            raise ParseError(str(exc), number, line) from None
    return net


def _split_top(text: str) -> list[str]:
    """Split at commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")")
        cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]
