"""SBML import and export (needs the ``sbml`` extra: ``pip install 'cupyssa[sbml]'``, which
installs ``python-libsbml``).

:func:`read_sbml` reads SBML Level 2 and 3 into an :class:`~cupyssa.events.EventModel` (network,
initial counts, parameter values, events) that :func:`cupyssa.simulate` accepts directly.

Interpretation (the stochastic reading of SBML used by the DSMTS test suite):

* **Kinetic laws are propensities, taken literally as written** (molecules per unit time; no
  unit conversion). Every law becomes an :class:`~cupyssa.expressions.Expression` compiled by
  code generation; mass-action-looking laws are *not* recognised (``k*A*A`` means ``k A^2``,
  not ``k A (A-1)/2``).
* **Species** are molecule counts. A species with ``hasOnlySubstanceUnits=false`` (the Level 2
  default) denotes its concentration in math: it is replaced by ``count / compartment`` in
  kinetic laws, triggers and assignments; an ``initialConcentration`` becomes ``concentration *
  size`` molecules; an event assigning it sets ``value * size`` molecules. Initial amounts must
  be non-negative integers (within 1e-9 relative).
* **Boundary and constant species** are not changed by reactions (they are left out of the
  stoichiometry) but are species of the network that laws read and events may assign
  (boundary, non-constant ones).
* **Parameters**: global parameters keep their ids; local parameters become global parameters
  ``<reaction>_<parameter>``. Compartments that math reads become parameters named by their
  id (their size). Constant parameters with a negative value are inlined as numbers. Ids that
  are Python keywords get a trailing ``_``
  (``metadata["ids"]`` maps SBML ids to network names).
* **Assignment rules** are substituted into every expression that reads their variable (a
  species defined by a rule is therefore not a state variable); **initial assignments** are
  evaluated at load time; **function definitions** are inlined.
* **Events** without delay, triggered by time (``time >= t_e``) or by species / parameter values,
  are applied exactly (see :mod:`cupyssa.events` for the precise semantics).

Unsupported, each raising :class:`SBMLError` naming the element: delays, event priorities, rate
rules, algebraic rules, fast reactions, constraints, conversion factors, variable stoichiometry,
compartments that change, time in kinetic laws, reaction ids in math, ``rateOf``, distributions
and other required packages, and MathML functions outside the supported set.

:func:`network_to_sbml` / :meth:`cupyssa.ReactionNetwork.to_sbml` write SBML Level 3 Version 2
(one compartment of size 1, species in amounts, every law as explicit math), and
:func:`model_to_sbml` a model with its events. Mass action is written as ``k * A * (A - 1) / 2``
(the package's combinatorial convention), which evaluates to exactly the same doubles as the
built-in law while the combinatorial factors stay below 2^53, so a written-and-read network
simulates the same trajectories for the same seed.
"""

from __future__ import annotations

import keyword
import math
import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .errors import NetworkError, ParameterError
from .events import Event, EventModel
from .expressions import (Call, Expression, Name, Node, Num, Param, Species, Time, evaluate_scalar,
                          symbols, to_infix)
from .network import ReactionNetwork
from .ratelaws import Hill, HillRepression, MassAction, MichaelisMenten, Neural

__all__ = ["SBMLError", "read_sbml", "network_to_sbml", "model_to_sbml", "law_expression"]


class SBMLError(NetworkError):
    """An SBML document that cannot be read (invalid, or using an unsupported feature: the
    message names the element) or a network that cannot be written."""


def _libsbml():
    try:
        import libsbml
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError("SBML support needs python-libsbml: pip install 'cupyssa[sbml]'") from None
    return libsbml


# -- reading -----------------------------------------------------------------------------------
def read_sbml(source: str | os.PathLike | bytes) -> EventModel:
    """Read an SBML Level 2 or 3 model.

    Parameters
    ----------
    source : str, path or bytes
        A file path, or the SBML document itself (a string starting with ``<``, or bytes).

    Returns
    -------
    EventModel
        ``.network`` (species, parameters, reactions with Expression laws), ``.x0`` (initial
        counts), ``.params`` (parameter values), ``.events`` and ``.metadata`` (``sbml_id``,
        ``name``, ``level``, ``version``, ``ids``: SBML id -> network name where they differ,
        ``assigned_species``: species defined by assignment rules, hence not simulated;
        ``inlined_parameters``: negative constants replaced by their values).
        ``simulate(model, t_eval=..., ...)`` accepts it directly; SBML holds no simulation
        horizon, so ``model.t_end`` is the default 1.0: pass ``t_eval``.

    Raises
    ------
    SBMLError
        Invalid SBML, or an unsupported element (named in the message).
    FileNotFoundError
        ``source`` is a path that does not exist.
    """
    libsbml = _libsbml()
    if isinstance(source, bytes):
        source = source.decode("utf-8")
    if isinstance(source, str) and source.lstrip().startswith("<"):
        doc, origin = libsbml.readSBMLFromString(source), "SBML string"
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no SBML file {path!r}")
        doc, origin = libsbml.readSBMLFromFile(path), repr(path)
    errors = [doc.getError(i) for i in range(doc.getNumErrors())
              if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    if errors:
        lines = "; ".join(f"line {e.getLine()}: {e.getMessage().strip()}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise SBMLError(f"{origin} is not valid SBML: {lines}{more}")
    if doc.getModel() is None:
        raise SBMLError(f"{origin} has no <model>")
    if doc.getLevel() < 2:
        raise SBMLError(f"{origin} is SBML Level {doc.getLevel()}; only Levels 2 and 3 are supported "
                        "(libsbml's setLevelAndVersion converts Level 1 documents)")
    return _Reader(doc, libsbml).build()


@dataclass
class _SpeciesInfo:
    sid: str
    name: str
    compartment: str
    concentration: bool  # math denotes the concentration
    boundary: bool
    constant: bool


_AVOGADRO = 6.02214179e23  # the value SBML Level 3 Version 1 fixes


class _Reader:
    def __init__(self, doc, lib):
        self.doc, self.lib, self.m = doc, lib, doc.getModel()
        self.level, self.version = doc.getLevel(), doc.getVersion()
        self.kind: dict = {}  # SBML id -> "compartment" | "species" | "parameter" | "reaction" | "speciesref"
        self.names: dict = {}  # SBML id -> network name
        self.used_names: set = set()
        self.functions: dict = {}
        self.rules: dict = {}  # variable -> AST
        self.rule_trees: dict = {}
        self.rule_stack: list = []
        self.species: dict = {}
        self.params: dict = {}  # SBML id -> value or None
        self.constant_params: set = set()
        self.inlined: dict = {}  # SBML id -> value (negative constants)
        self.compartments: dict = {}  # SBML id -> (size or None, constant, spatialDimensions)
        self.used_compartments: set = set()
        self.sref_values: dict = {}

    # -- helpers ---------------------------------------------------------------------------
    def name_for(self, sid: str) -> str:
        if sid in self.names:
            return self.names[sid]
        name = sid
        while keyword.iskeyword(name) or name in self.used_names:
            name += "_"
        self.names[sid] = name
        self.used_names.add(name)
        return name

    def error(self, message: str) -> SBMLError:
        return SBMLError(message)

    # -- MathML ----------------------------------------------------------------------------
    def math(self, ast, ctx: str, local: Mapping[str, str] | None = None, bound=None, depth=0) -> Node:
        """Convert a libsbml AST into an expression tree with the document's semantics applied
        (species -> count or count / compartment, rules substituted, locals renamed)."""
        lib = self.lib
        if ast is None:
            raise self.error(f"{ctx}: missing math")
        if depth > 200:
            raise self.error(f"{ctx}: math nested too deeply (recursive function definitions?)")
        T = ast.getType()
        kids = [ast.getChild(i) for i in range(ast.getNumChildren())]

        def sub(node):
            return self.math(node, ctx, local, bound, depth + 1)

        def fold(op, nodes, empty):
            if not nodes:
                return empty
            out = sub(nodes[0])
            for k in nodes[1:]:
                out = Call(op, (out, sub(k)))
            return out

        if T == lib.AST_INTEGER:
            return Num(float(ast.getInteger()))
        if T in (lib.AST_REAL, lib.AST_REAL_E, lib.AST_RATIONAL):
            return Num(ast.getReal())
        if T == lib.AST_NAME:
            name = ast.getName()
            if bound is not None and name in bound:
                return bound[name]
            return self.symbol(name, ctx, local)
        if T == lib.AST_NAME_TIME:
            return Time()
        if T == lib.AST_NAME_AVOGADRO:
            return Num(_AVOGADRO)
        if T == lib.AST_CONSTANT_E:
            return Num(math.e)
        if T == lib.AST_CONSTANT_PI:
            return Num(math.pi)
        if T == lib.AST_CONSTANT_TRUE:
            return Call("true", ())
        if T == lib.AST_CONSTANT_FALSE:
            return Call("false", ())
        if T == lib.AST_PLUS:
            return fold("add", kids, Num(0.0))
        if T == lib.AST_TIMES:
            return fold("mul", kids, Num(1.0))
        if T == lib.AST_MINUS:
            if len(kids) == 1:
                return Call("neg", (sub(kids[0]),))
            return Call("sub", (sub(kids[0]), sub(kids[1])))
        if T == lib.AST_DIVIDE:
            return Call("div", (sub(kids[0]), sub(kids[1])))
        if T in (lib.AST_POWER, lib.AST_FUNCTION_POWER):
            return Call("pow", (sub(kids[0]), sub(kids[1])))
        unary = {lib.AST_FUNCTION_EXP: "exp", lib.AST_FUNCTION_LN: "ln", lib.AST_FUNCTION_ABS: "abs",
                 lib.AST_FUNCTION_FLOOR: "floor", lib.AST_FUNCTION_CEILING: "ceil",
                 lib.AST_FUNCTION_SIN: "sin", lib.AST_FUNCTION_COS: "cos", lib.AST_FUNCTION_TAN: "tan",
                 lib.AST_FUNCTION_SINH: "sinh", lib.AST_FUNCTION_COSH: "cosh",
                 lib.AST_FUNCTION_TANH: "tanh", lib.AST_FUNCTION_ARCSIN: "asin",
                 lib.AST_FUNCTION_ARCCOS: "acos", lib.AST_FUNCTION_ARCTAN: "atan",
                 lib.AST_LOGICAL_NOT: "not"}
        if T in unary and len(kids) == 1:
            return Call(unary[T], (sub(kids[0]),))
        reciprocal = {lib.AST_FUNCTION_SEC: "cos", lib.AST_FUNCTION_CSC: "sin",
                      lib.AST_FUNCTION_COT: "tan", lib.AST_FUNCTION_SECH: "cosh",
                      lib.AST_FUNCTION_CSCH: "sinh", lib.AST_FUNCTION_COTH: "tanh"}
        if T in reciprocal and len(kids) == 1:
            return Call("div", (Num(1.0), Call(reciprocal[T], (sub(kids[0]),))))
        if T == lib.AST_FUNCTION_LOG:
            if len(kids) == 1:
                return Call("log10", (sub(kids[0]),))
            base, arg = sub(kids[0]), sub(kids[1])
            if isinstance(base, Num) and base.value == 10.0:
                return Call("log10", (arg,))
            return Call("div", (Call("ln", (arg,)), Call("ln", (base,))))
        if T == lib.AST_FUNCTION_ROOT:
            if len(kids) == 1:
                return Call("sqrt", (sub(kids[0]),))
            degree, arg = sub(kids[0]), sub(kids[1])
            if isinstance(degree, Num) and degree.value == 2.0:
                return Call("sqrt", (arg,))
            return Call("pow", (arg, Call("div", (Num(1.0), degree))))
        if T in (lib.AST_FUNCTION_MAX, lib.AST_FUNCTION_MIN):
            op = "max" if T == lib.AST_FUNCTION_MAX else "min"
            if not kids:
                raise self.error(f"{ctx}: {op}() without arguments")
            return fold(op, kids, None)
        if T == lib.AST_FUNCTION_PIECEWISE:
            return Call("piecewise", tuple(sub(k) for k in kids))
        relations = {lib.AST_RELATIONAL_LT: "lt", lib.AST_RELATIONAL_LEQ: "le",
                     lib.AST_RELATIONAL_GT: "gt", lib.AST_RELATIONAL_GEQ: "ge",
                     lib.AST_RELATIONAL_EQ: "eq", lib.AST_RELATIONAL_NEQ: "ne"}
        if T in relations:
            if len(kids) < 2:
                return Call("true", ())
            args = [sub(k) for k in kids]
            out = Call(relations[T], (args[0], args[1]))
            for a, b in zip(args[1:], args[2:]):  # n-ary: a < b < c
                out = Call("and", (out, Call(relations[T], (a, b))))
            return out
        logical = {lib.AST_LOGICAL_AND: ("and", "true"), lib.AST_LOGICAL_OR: ("or", "false"),
                   lib.AST_LOGICAL_XOR: ("xor", "false")}
        if T in logical:
            op, empty = logical[T]
            return fold(op, kids, Call(empty, ()))
        if T == getattr(lib, "AST_LOGICAL_IMPLIES", -1) and len(kids) == 2:
            return Call("or", (Call("not", (sub(kids[0]),)), sub(kids[1])))
        if T == lib.AST_FUNCTION:
            name = ast.getName()
            if name not in self.functions:
                raise self.error(f"{ctx}: call of unknown function {name!r}")
            params, body = self.functions[name]
            if len(params) != len(kids):
                raise self.error(f"{ctx}: function {name!r} takes {len(params)} arguments, got "
                                 f"{len(kids)}")
            args = {p: sub(k) for p, k in zip(params, kids)}
            return self.math(body, f"{ctx} (in function {name!r})", None, args, depth + 1)
        formula = self.lib.formulaToL3String(ast)
        if T == lib.AST_FUNCTION_DELAY:
            raise self.error(f"{ctx}: delay() is not supported ({formula})")
        if T == getattr(lib, "AST_FUNCTION_RATE_OF", -1):
            raise self.error(f"{ctx}: rateOf() is not supported ({formula})")
        distrib = lib.AST_DISTRIB_FUNCTION_NORMAL <= T <= lib.AST_DISTRIB_FUNCTION_RAYLEIGH
        if T == lib.AST_CSYMBOL_FUNCTION or distrib:
            raise self.error(f"{ctx}: distributions / csymbol functions are not supported ({formula})")
        raise self.error(f"{ctx}: the MathML {formula!r} is not supported")

    def symbol(self, sid: str, ctx: str, local: Mapping[str, str] | None) -> Node:
        if local and sid in local:
            return local[sid]
        kind = self.kind.get(sid)
        if kind is None:
            raise self.error(f"{ctx}: unknown identifier {sid!r}")
        if sid in self.rules:
            return self.rule_tree(sid)
        if kind == "species":
            sp = self.species[sid]
            count = Name(sp.name)
            if sp.concentration:
                return Call("div", (count, self.symbol(sp.compartment, ctx, None)))
            return count
        if kind == "compartment":
            self.used_compartments.add(sid)
            return Name(self.name_for(sid))
        if kind == "parameter":
            if sid in self.inlined:
                return Num(self.inlined[sid])
            return Name(self.name_for(sid))
        if kind == "speciesref":
            if sid in self.sref_values:
                return Num(self.sref_values[sid])
            raise self.error(f"{ctx}: reads the stoichiometry {sid!r}, which has no constant value")
        raise self.error(f"{ctx}: reads the {kind} {sid!r}; referring to reaction rates in math is "
                         "not supported")

    def rule_tree(self, sid: str) -> Node:
        if sid in self.rule_trees:
            return self.rule_trees[sid]
        if sid in self.rule_stack:
            cycle = " -> ".join(self.rule_stack + [sid])
            raise self.error(f"assignment rules form a cycle: {cycle}")
        self.rule_stack.append(sid)
        tree = self.math(self.rules[sid], f"assignment rule for {sid!r}")
        self.rule_stack.pop()
        self.rule_trees[sid] = tree
        return tree

    # -- document ----------------------------------------------------------------------------
    def check_unsupported(self):
        lib, doc, m = self.lib, self.doc, self.m
        ns = doc.getNamespaces()
        declared = {ns.getURI(i) for i in range(ns.getNumNamespaces())} if ns is not None else set()
        core = lib.SBMLNamespaces.getSBMLNamespaceURI(self.level, self.version)
        for i in range(doc.getNumPlugins() if self.level >= 3 else 0):  # no packages in Level 2
            plugin = doc.getPlugin(i)
            if plugin.getURI() not in declared or plugin.getURI() == core:
                continue  # libsbml-internal (l3v2extendedmath is core math), not a package
            pkg = plugin.getPackageName()
            if pkg == "distrib":
                raise self.error("the model uses the 'distrib' package (distributions): not supported")
            if doc.getPackageRequired(pkg):
                raise self.error(f"the model requires the SBML package {pkg!r}: not supported")
        if m.getNumConstraints():
            c = m.getConstraint(0)
            raise self.error(f"constraint {c.getId() or lib.formulaToL3String(c.getMath())!r}: "
                             "constraints are not supported")
        if self.level >= 3 and m.isSetConversionFactor():
            raise self.error(f"model conversionFactor {m.getConversionFactor()!r} is not supported")
        for i in range(m.getNumRules()):
            r = m.getRule(i)
            if r.isRate():
                raise self.error(f"rate rule for {r.getVariable()!r} is not supported (the model "
                                 "must be a pure jump process)")
            if r.isAlgebraic():
                raise self.error(f"algebraic rule {lib.formulaToL3String(r.getMath())!r}"
                                 f"{' (id ' + repr(r.getId()) + ')' if r.isSetId() else ''} is not "
                                 "supported")
        for i in range(m.getNumReactions()):
            r = m.getReaction(i)
            if r.isSetFast() and r.getFast():
                raise self.error(f"reaction {r.getId()!r} is fast (fast='true'): not supported")
        for i in range(m.getNumEvents()):
            e = m.getEvent(i)
            label = e.getId() or f"#{i}"
            if e.isSetDelay():
                raise self.error(f"event {label!r} has a delay: not supported")
            if self.level >= 3 and e.isSetPriority():
                raise self.error(f"event {label!r} has a priority: not supported (events at the "
                                 "same instant run in document order)")

    def read_declarations(self):
        m = self.m
        for i in range(m.getNumFunctionDefinitions()):
            fd = m.getFunctionDefinition(i)
            self.functions[fd.getId()] = ([fd.getArgument(k).getName() for k in range(fd.getNumArguments())],
                                          fd.getBody())
        for i in range(m.getNumCompartments()):
            c = m.getCompartment(i)
            self.kind[c.getId()] = "compartment"
            dims = c.getSpatialDimensionsAsDouble() if self.level >= 3 else c.getSpatialDimensions()
            self.compartments[c.getId()] = (c.getSize() if c.isSetSize() else None, c.getConstant(), dims)
        for i in range(m.getNumParameters()):
            p = m.getParameter(i)
            self.kind[p.getId()] = "parameter"
            self.params[p.getId()] = p.getValue() if p.isSetValue() else None
            if p.getConstant():
                self.constant_params.add(p.getId())
        for i in range(m.getNumSpecies()):
            s = m.getSpecies(i)
            sid = s.getId()
            if self.level >= 3 and s.isSetConversionFactor():
                raise self.error(f"species {sid!r} has a conversionFactor: not supported")
            self.kind[sid] = "species"
            hosu = s.getHasOnlySubstanceUnits()
            comp = s.getCompartment()
            if comp not in self.compartments:
                raise self.error(f"species {sid!r} is in unknown compartment {comp!r}")
            dims = self.compartments[comp][2]
            self.species[sid] = _SpeciesInfo(sid, "", comp, (not hosu) and dims != 0,
                                             s.getBoundaryCondition(), s.getConstant())
        for i in range(m.getNumReactions()):
            r = m.getReaction(i)
            self.kind[r.getId()] = "reaction"
            for lst in (r.getListOfReactants(), r.getListOfProducts()):
                for k in range(lst.size()):
                    sr = lst.get(k)
                    if sr.isSetId() and sr.getId():
                        self.kind[sr.getId()] = "speciesref"
        # reserve the names of the network's symbols in declaration order
        for sid, kind in self.kind.items():
            if kind in ("compartment", "parameter", "species"):
                self.name_for(sid)
        for sp in self.species.values():
            sp.name = self.names[sp.sid]
        for i in range(m.getNumRules()):
            r = m.getRule(i)
            var = r.getVariable()
            kind = self.kind.get(var)
            if kind is None:
                raise self.error(f"assignment rule for unknown variable {var!r}")
            if kind == "speciesref":
                raise self.error(f"assignment rule for the stoichiometry {var!r}: variable "
                                 "stoichiometry is not supported")
            if kind == "compartment":
                raise self.error(f"assignment rule for compartment {var!r}: compartments that "
                                 "change size are not supported")
            if kind == "species" and not self.species[var].boundary and self._is_reactant(var):
                raise self.error(f"species {var!r} has an assignment rule but is changed by "
                                 "reactions (it must be a boundary species)")
            self.rules[var] = r.getMath()

    def _is_reactant(self, sid):
        m = self.m
        for i in range(m.getNumReactions()):
            r = m.getReaction(i)
            for lst in (r.getListOfReactants(), r.getListOfProducts()):
                if any(lst.get(k).getSpecies() == sid for k in range(lst.size())):
                    return True
        return False

    def initial_values(self) -> dict:
        """Values of species (counts), parameters and compartments at t0, by network name."""
        m = self.m
        values: dict = {}
        pending: dict = {}  # network name -> (tree, scale tree or None, label)
        for cid, (size, _, _) in self.compartments.items():
            if size is not None and not math.isnan(size):
                values[self.names[cid]] = size
        for pid, value in self.params.items():
            if value is not None and not math.isnan(value):
                values[self.names[pid]] = value
        ias = {}
        for i in range(m.getNumInitialAssignments()):
            ia = m.getInitialAssignment(i)
            ias[ia.getSymbol()] = ia.getMath()
        for i in range(m.getNumSpecies()):
            s = m.getSpecies(i)
            sp = self.species[s.getId()]
            if sp.sid in ias or sp.sid in self.rules:
                continue
            if s.isSetInitialAmount():
                values[sp.name] = s.getInitialAmount()
            elif s.isSetInitialConcentration():
                pending[sp.name] = (Call("mul", (Num(s.getInitialConcentration()),
                                                 Name(self.names[sp.compartment]))),
                                    f"initial amount of species {sp.sid!r}")
        for sid, ast in ias.items():
            kind = self.kind.get(sid)
            ctx = f"initial assignment to {sid!r}"
            if kind is None:
                raise self.error(f"{ctx}: unknown symbol")
            if kind == "reaction":
                raise self.error(f"{ctx}: initial assignments to reactions are not supported")
            tree = self.math(ast, ctx)
            if kind == "speciesref":
                pending[("sref", sid)] = (tree, ctx)
                continue
            if kind == "species" and self.species[sid].concentration:
                tree = Call("mul", (tree, Name(self.names[self.species[sid].compartment])))
            pending[self.names[sid]] = (tree, ctx)
            values.pop(self.names[sid], None)
        while pending:
            progress = False
            for key in list(pending):
                tree, ctx = pending[key]
                try:
                    v = evaluate_scalar(tree, values, 0.0)
                except KeyError:
                    continue
                if isinstance(key, tuple):
                    self.sref_values[key[1]] = v
                else:
                    values[key] = v
                del pending[key]
                progress = True
            if not progress:
                key = next(iter(pending))
                tree, ctx = pending[key]
                missing = sorted(n.name for n in symbols(tree)
                                 if isinstance(n, Name) and n.name not in values)
                raise self.error(f"{ctx} cannot be evaluated: no value for {missing}")
        return values

    def build(self) -> EventModel:
        m = self.m
        self.check_unsupported()
        self.read_declarations()
        # negative constant parameters are inlined (network parameters are non-negative);
        # event-assigned or rule-defined parameters are not constant
        for pid, value in self.params.items():
            if value is not None and value < 0 and pid in self.constant_params and pid not in self.rules:
                self.inlined[pid] = value
        values = self.initial_values()
        net = ReactionNetwork()
        x0 = {}
        assigned_species = []
        for sp in self.species.values():
            if sp.sid in self.rules:
                assigned_species.append(sp.sid)
                continue
            if sp.name not in values:
                raise self.error(f"species {sp.sid!r} has no initial amount or concentration")
            x0[sp.name] = self._count(values[sp.name], sp.sid)
            net.add_species(sp.name, x0[sp.name])
        reactions = []
        local_names = {}
        for i in range(m.getNumReactions()):
            reactions.append(self.reaction(m.getReaction(i), local_names))
        events = [ev for ev in (self.event(m.getEvent(i), i) for i in range(m.getNumEvents()))
                  if ev is not None]
        # parameters: globals (not rule-defined, not inlined), locals, compartments read by math
        params = {}
        for pid in self.params:
            if pid in self.rules or pid in self.inlined:
                continue
            name = self.names[pid]
            params[name] = values.get(name)
        for name, value in local_names.values():
            params[name] = value
        for cid in self.compartments:
            if cid in self.used_compartments and cid not in self.rules:
                name = self.names[cid]
                if name not in values:
                    raise self.error(f"compartment {cid!r} has no size")
                params[name] = values[name]
        for name, value in params.items():
            if value is None:
                raise self.error(f"parameter {name!r} has no value")
            net.add_parameter(name, value)
        for rid, reactants, products, tree in reactions:
            try:
                net.add_reaction(reactants, products, Expression(tree), name=rid)
            except NetworkError as exc:
                raise self.error(f"reaction {rid!r}: {exc}") from None
        try:  # parameters of expression laws may be negative; the others may not
            net.parameter_vector(params)
        except ParameterError as exc:
            raise self.error(f"{exc} (a negative parameter that no kinetic law reads must be "
                             "constant; it is then inlined)") from None
        metadata = {"sbml_id": m.getId(), "name": m.getName(), "level": self.level,
                    "version": self.version,
                    "ids": {sid: name for sid, name in self.names.items() if sid != name},
                    "assigned_species": assigned_species,
                    "inlined_parameters": dict(self.inlined)}
        model = EventModel(net, x0, {p: params[p] for p in net.parameters}, metadata=metadata,
                           events=events)
        if events:  # check targets and triggers now (names, time-trigger forms)
            from .events import _resolve_events

            try:
                _resolve_events(net, events)
            except NetworkError as exc:
                raise self.error(str(exc)) from None
        return model

    def _count(self, value: float, sid: str) -> int:
        r = round(value) if math.isfinite(value) else value
        if not math.isfinite(value) or r < 0 or abs(value - r) > 1e-9 * max(1.0, abs(value)):
            raise self.error(f"species {sid!r}: initial amount {value!r} is not a non-negative "
                             "integer (species are molecule counts)")
        return int(r)

    def reaction(self, r, local_names):
        rid = r.getId()
        name = self.name_for(rid)
        if not r.isSetKineticLaw() or not r.getKineticLaw().isSetMath():
            raise self.error(f"reaction {rid!r} has no kinetic law")
        kl = r.getKineticLaw()
        local = {}
        n_local = kl.getNumLocalParameters() if self.level >= 3 else kl.getNumParameters()
        for k in range(n_local):
            p = kl.getLocalParameter(k) if self.level >= 3 else kl.getParameter(k)
            pid = p.getId()
            if not p.isSetValue():
                raise self.error(f"local parameter {pid!r} of reaction {rid!r} has no value")
            value = p.getValue()
            if value < 0:
                local[pid] = Num(value)
                continue
            gname = self.name_for(f"{rid}_{pid}")
            local[pid] = Name(gname)
            local_names[(rid, pid)] = (gname, value)
        sides = []
        for lst, what in ((r.getListOfReactants(), "reactant"), (r.getListOfProducts(), "product")):
            terms = {}
            for k in range(lst.size()):
                sr = lst.get(k)
                sid = sr.getSpecies()
                if sid not in self.species:
                    raise self.error(f"reaction {rid!r}: unknown {what} species {sid!r}")
                label = f"reaction {rid!r}: stoichiometry of {what} {sid!r}"
                if self.level < 3 and sr.isSetStoichiometryMath():
                    raise self.error(f"{label} is given by stoichiometryMath: not supported")
                srid = sr.getId() if sr.isSetId() else ""
                if srid and srid in self.rules:
                    raise self.error(f"{label} is set by a rule: variable stoichiometry is not "
                                     "supported")
                if srid and any(self._assigns_event(srid)):
                    raise self.error(f"{label} is changed by an event: not supported")
                if srid in self.sref_values:
                    coeff = self.sref_values[srid]
                elif self.level >= 3 and not sr.isSetStoichiometry():
                    raise self.error(f"{label} is not set")
                else:
                    coeff = sr.getStoichiometry()
                    if self.level < 3 and sr.getDenominator() != 1:
                        coeff = coeff / sr.getDenominator()
                if not (math.isfinite(coeff) and coeff >= 0 and float(coeff).is_integer()):
                    raise self.error(f"{label} is {coeff}, not a non-negative integer")
                sp = self.species[sid]
                if sp.boundary or sp.constant:
                    continue  # not changed by reactions
                if sid in self.rules:
                    raise self.error(f"reaction {rid!r} changes species {sid!r}, which an "
                                     "assignment rule defines")
                terms[sp.name] = terms.get(sp.name, 0) + int(coeff)
            sides.append(terms)
        ctx = f"kinetic law of reaction {rid!r}"
        tree = self.math(kl.getMath(), ctx, local)
        if Time() in symbols(tree):
            raise self.error(f"{ctx} depends on time ({to_infix(tree)}): time-dependent "
                             "propensities are not supported by the exact simulator")
        return name, sides[0], sides[1], tree

    def _assigns_event(self, sid):
        m = self.m
        for i in range(m.getNumEvents()):
            e = m.getEvent(i)
            for k in range(e.getNumEventAssignments()):
                yield e.getEventAssignment(k).getVariable() == sid

    def event(self, e, i):
        eid = e.getId() or f"event{i}"
        ctx = f"event {eid!r}"
        if not e.isSetTrigger() or not e.getTrigger().isSetMath():
            raise self.error(f"{ctx} has no trigger")
        trig = e.getTrigger()
        trigger = self.math(trig.getMath(), f"{ctx} trigger")
        initial_value = trig.getInitialValue() if self.level >= 3 else True
        persistent = trig.getPersistent() if self.level >= 3 else True
        uvftt = e.getUseValuesFromTriggerTime() if (self.level, self.version) >= (2, 4) else True
        assignments = []
        for k in range(e.getNumEventAssignments()):
            ea = e.getEventAssignment(k)
            var = ea.getVariable()
            kind = self.kind.get(var)
            label = f"{ctx} assignment to {var!r}"
            if kind is None:
                raise self.error(f"{label}: unknown variable")
            if var in self.rules:
                raise self.error(f"{label}: the variable is defined by an assignment rule")
            tree = self.math(ea.getMath(), label)
            if kind == "species":
                sp = self.species[var]
                if sp.constant:
                    raise self.error(f"{label}: the species is constant")
                if sp.concentration:
                    tree = Call("mul", (tree, self.symbol(sp.compartment, label, None)))
                assignments.append((sp.name, tree))
            elif kind == "parameter":
                if var in self.inlined:
                    raise self.error(f"{label}: the parameter is constant")
                assignments.append((self.names[var], tree))
            elif kind == "compartment":
                raise self.error(f"{label}: compartments that change size are not supported")
            else:
                raise self.error(f"{label}: assigning a {kind} is not supported")
        if not assignments:
            return None  # an event without assignments has no effect
        return Event(trigger, tuple(assignments), id=eid, initial_value=bool(initial_value),
                     persistent=bool(persistent), use_values_from_trigger_time=bool(uvftt))


# -- writing -----------------------------------------------------------------------------------
def law_expression(law, network: ReactionNetwork) -> Node:
    """The propensity of a resolved built-in or expression law as an expression tree (indices),
    in the operation order of the kernels (see the module docstring)."""
    if isinstance(law, Expression):
        return law.expr
    if isinstance(law, MassAction):
        c = None
        for s, order in law.reactants:
            term = Species(s)
            for q in range(1, order):
                term = Call("mul", (term, Call("sub", (Species(s), Num(float(q))))))
            if order > 1:
                term = Call("div", (term, Num(float(math.factorial(order)))))
            c = term if c is None else Call("mul", (c, term))
        return Param(law.k) if c is None else Call("mul", (Param(law.k), c))
    if isinstance(law, (Hill, HillRepression)):
        Pn = Call("pow", (Species(law.P), Param(law.n)))
        Kn = Call("pow", (Param(law.K), Param(law.n)))
        top = Pn if type(law) is Hill else Kn
        return Call("div", (Call("mul", (Param(law.vmax), top)), Call("add", (Kn, Pn))))
    if isinstance(law, MichaelisMenten):
        return Call("div", (Call("mul", (Param(law.vmax), Species(law.S))),
                            Call("add", (Param(law.Km), Species(law.S)))))
    if isinstance(law, Neural):
        z = Param(law.b)
        for w, s in law.weights:
            z = Call("add", (z, Call("mul", (Param(w), Species(s)))))
        if law.f == "sigmoid":
            f = Call("div", (Num(1.0), Call("add", (Num(1.0), Call("exp", (Call("neg", (z,)),))))))
        elif law.f == "softplus":
            tail = Call("exp", (Call("neg", (Call("abs", (z,)),)),))
            f = Call("add", (Call("max", (z, Num(0.0))), Call("ln", (Call("add", (Num(1.0), tail)),))))
        else:
            f = Call("exp", (z,))
        return Call("mul", (Param(law.k), f))
    raise SBMLError(f"cannot write rate laws of type {type(law).__name__} to SBML")


class _Writer:
    def __init__(self, lib, network):
        self.lib = lib
        self.net = network

    def ast(self, node: Node):
        lib = self.lib
        if isinstance(node, Num):
            a = lib.ASTNode(lib.AST_REAL)
            a.setValue(node.value)
            return a
        if isinstance(node, (Name, Species, Param)):
            a = lib.ASTNode(lib.AST_NAME)
            a.setName(node.name if isinstance(node, Name) else
                      self.net.species[node.index] if isinstance(node, Species) else
                      self.net.parameters[node.index])
            return a
        if isinstance(node, Time):
            a = lib.ASTNode(lib.AST_NAME_TIME)
            a.setName("time")
            return a
        op, args = node.op, node.args
        if op == "log10":
            a = lib.parseL3Formula("log10(PLACEHOLDER)")
            a.replaceChild(1, self.ast(args[0]), True)
            return a
        if op == "sign":
            u = args[0]
            return self.ast(Call("piecewise", (Num(1.0), Call("gt", (u, Num(0.0))), Num(-1.0),
                                               Call("lt", (u, Num(0.0))), Num(0.0))))
        types = {"add": lib.AST_PLUS, "sub": lib.AST_MINUS, "neg": lib.AST_MINUS, "mul": lib.AST_TIMES,
                 "div": lib.AST_DIVIDE, "pow": lib.AST_POWER, "exp": lib.AST_FUNCTION_EXP,
                 "ln": lib.AST_FUNCTION_LN, "sqrt": lib.AST_FUNCTION_ROOT,
                 "abs": lib.AST_FUNCTION_ABS, "floor": lib.AST_FUNCTION_FLOOR,
                 "ceil": lib.AST_FUNCTION_CEILING, "sin": lib.AST_FUNCTION_SIN,
                 "cos": lib.AST_FUNCTION_COS, "tan": lib.AST_FUNCTION_TAN,
                 "sinh": lib.AST_FUNCTION_SINH, "cosh": lib.AST_FUNCTION_COSH,
                 "tanh": lib.AST_FUNCTION_TANH, "asin": lib.AST_FUNCTION_ARCSIN,
                 "acos": lib.AST_FUNCTION_ARCCOS, "atan": lib.AST_FUNCTION_ARCTAN,
                 "min": lib.AST_FUNCTION_MIN, "max": lib.AST_FUNCTION_MAX,
                 "piecewise": lib.AST_FUNCTION_PIECEWISE, "lt": lib.AST_RELATIONAL_LT,
                 "le": lib.AST_RELATIONAL_LEQ, "gt": lib.AST_RELATIONAL_GT,
                 "ge": lib.AST_RELATIONAL_GEQ, "eq": lib.AST_RELATIONAL_EQ,
                 "ne": lib.AST_RELATIONAL_NEQ, "and": lib.AST_LOGICAL_AND,
                 "or": lib.AST_LOGICAL_OR, "xor": lib.AST_LOGICAL_XOR, "not": lib.AST_LOGICAL_NOT,
                 "true": lib.AST_CONSTANT_TRUE, "false": lib.AST_CONSTANT_FALSE}
        a = lib.ASTNode(types[op])
        for arg in args:
            a.addChild(self.ast(arg))
        return a


def network_to_sbml(network: ReactionNetwork, x0=None, params=None, *, events=(),
                    model_id: str = "cupyssa_model") -> str:
    """Write a network (and optionally events) as an SBML Level 3 Version 2 document.

    Parameters
    ----------
    network : ReactionNetwork
    x0 : mapping or array [S], optional
        Initial counts (default: the network's declared defaults; species without one get no
        ``initialAmount``).
    params : mapping or array [P], optional
        Parameter values (default: the declared defaults).
    events : sequence of cupyssa.events.Event
        Written as SBML events (parameters they assign are written ``constant="false"``).
    model_id : str
        The ``<model id>``.

    Returns
    -------
    str
        The SBML document: one compartment of size 1; species as amounts
        (``hasOnlySubstanceUnits="true"``); irreversible reactions whose kinetic law is the
        propensity (see :func:`law_expression`).

    Raises
    ------
    SBMLError
        A law type that cannot be written, or per-trajectory values.
    """
    lib = _libsbml()
    x0_values = _defaults(network.species, network.initial_defaults, x0, "x0")
    p_values = _defaults(network.parameters, network.parameter_defaults, params, "params")
    assigned = {name for ev in events for name, _ in ev.assignments}
    doc = lib.SBMLDocument(3, 2)
    model = doc.createModel()
    model.setId(model_id)
    names = set(network.species) | set(network.parameters) | set(network.reaction_names)
    comp_id = "compartment"
    while comp_id in names:
        comp_id += "_"
    c = model.createCompartment()
    _ok(c.setId(comp_id), c.setSize(1.0), c.setConstant(True), c.setSpatialDimensions(3.0))
    for s in network.species:
        sp = model.createSpecies()
        _ok(sp.setId(s), sp.setCompartment(comp_id), sp.setHasOnlySubstanceUnits(True),
            sp.setBoundaryCondition(False), sp.setConstant(False))
        if x0_values.get(s) is not None:
            _ok(sp.setInitialAmount(float(x0_values[s])))
    for p in network.parameters:
        par = model.createParameter()
        _ok(par.setId(p), par.setConstant(p not in assigned))
        if p_values.get(p) is not None:
            _ok(par.setValue(float(p_values[p])))
    writer = _Writer(lib, network)
    for r in network.reactions:
        rxn = model.createReaction()
        _ok(rxn.setId(r.name), rxn.setReversible(False))
        for side, create in ((r.reactants, rxn.createReactant), (r.products, rxn.createProduct)):
            for s, n in side.items():
                ref = create()
                _ok(ref.setSpecies(s), ref.setStoichiometry(float(n)), ref.setConstant(True))
        tree = law_expression(r.law, network)
        read = {network.species[n.index] for n in symbols(tree) if isinstance(n, Species)}
        for s in sorted(read - set(r.reactants) - set(r.products), key=network.species.index):
            mod = rxn.createModifier()
            _ok(mod.setSpecies(s))
        kl = rxn.createKineticLaw()
        _ok(kl.setMath(writer.ast(tree)))
    for i, ev in enumerate(events):
        e = model.createEvent()
        _ok(e.setId(ev.id or f"event{i}"), e.setUseValuesFromTriggerTime(ev.use_values_from_trigger_time))
        trig = e.createTrigger()
        _ok(trig.setInitialValue(ev.initial_value), trig.setPersistent(ev.persistent),
            trig.setMath(writer.ast(ev.trigger)))
        for target, tree in ev.assignments:
            ea = e.createEventAssignment()
            _ok(ea.setVariable(target), ea.setMath(writer.ast(tree)))
    return lib.writeSBMLToString(doc)


def model_to_sbml(model) -> str:
    """Write a :class:`~cupyssa.models.Model` (with its events, for an
    :class:`~cupyssa.events.EventModel`) as SBML Level 3 Version 2; see :func:`network_to_sbml`."""
    return network_to_sbml(model.network, model.x0, model.params,
                           events=getattr(model, "events", ()),
                           model_id=str(model.metadata.get("sbml_id") or "cupyssa_model"))


def _defaults(names, declared: dict, given, what: str) -> dict:
    out = dict(declared)
    if given is None:
        return out
    if isinstance(given, Mapping):
        for k, v in given.items():
            if k not in names:
                raise SBMLError(f"{what}: unknown name {k!r}")
            if np.ndim(v) != 0:
                raise SBMLError(f"{what}[{k!r}] is per trajectory; SBML needs one value")
            out[k] = float(v)
        return out
    arr = np.asarray(given, dtype=float)
    if arr.shape != (len(names),):
        raise SBMLError(f"{what} has shape {arr.shape}; expected ({len(names)},)")
    return dict(zip(names, arr.tolist()))


def _ok(*codes_):
    """Check libsbml return codes."""
    for code in codes_:
        if isinstance(code, int) and code != 0:
            lib = _libsbml()
            raise SBMLError(f"libsbml refused a value: {lib.OperationReturnValue_toString(code)}")
