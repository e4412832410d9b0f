"""Discrete events: instantaneous assignments to species counts and parameters, triggered at a
given time or by a condition on the state (SBML events without delay).

Semantics (those of SBML Level 3 events without delay, stated precisely):

* An event **fires when its trigger goes from false to true**. Before the initial time the trigger
  is taken to be ``initial_value`` (SBML ``initialValue``; Level 2 documents behave as ``true``):
  with ``initial_value=False`` an event whose trigger is already true at ``t0`` fires at ``t0``;
  with ``True`` it does not, and must first become false.
* **Time-triggered** events have a trigger ``time >= t_e`` (or ``time > t_e``, ``t_e <= time``,
  ``t_e < time``; ``t_e`` an expression of constants and parameters that no event changes, equal
  on every trajectory of a call). Each fires at most once, at ``t_e``: the kernels stop every
  trajectory at ``t_e`` (status ``STOPPED``; the pending waiting time is discarded, exact by
  memorylessness), the assignments are applied, and the trajectories resume. The state observed
  at a grid time equal to ``t_e`` is the state after the event (right-continuous).
* **State-triggered** events have a trigger that reads species and parameters but not time.
  Their trigger value can change only when a reaction fires (or an event assigns): the
  code-generated kernel hook ``event_trigger(x, t, theta)`` compares every trigger with its last
  value (kept in extra columns of the per-trajectory ``theta``) after each reaction and stops the
  trajectory (status ``TRIGGERED``) when one changed; the driver fires the events whose trigger
  rose, re-arms those that fell, and resumes. So the event is applied at the exact time of the
  reaction that made its trigger true, before any other reaction or observation.
* Events firing at the same instant execute in document order. An event's assignments are all
  evaluated before any of them is applied; with ``use_values_from_trigger_time=True`` (the
  default) they are evaluated before any event of that instant executes, otherwise when the event
  executes. A non-``persistent`` event whose trigger was made false by an earlier event of the
  same instant does not execute. After the instant's events, triggers are re-evaluated: those
  that rose fire in turn (a cascade, at most ``MAX_CASCADE`` rounds).
* Assignments to species must give non-negative integers (within 1e-9 relative; they are
  rounded), else :class:`~cupyssa.errors.SimulationError`. Assignments to parameters make
  ``theta`` per-trajectory.

Random numbers: a stop at ``t_e`` consumes one step counter of the stopped trajectory only, and
resumed trajectories never consume counters while others catch up, so a trajectory's random
numbers still depend only on ``(seed, trajectory index)``: results do not depend on chunking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .codegen import load_function
from .errors import NetworkError, ParameterError, SimulationError
from .expressions import (Call, Node, Param, Species, Time, evaluate_tree, is_boolean,
                          python_source, resolve_tree, symbols, to_infix, _node)
from .kernels import codes
from .models import Model

__all__ = ["Event", "EventModel", "EventDriver", "MAX_CASCADE"]

#: most rounds of events triggering events at one instant
MAX_CASCADE = 1000


@dataclass(frozen=True)
class Event:
    """An event without delay.

    Parameters
    ----------
    trigger : Node or str
        Condition, e.g. ``"time >= 25"`` or ``"X >= 30"`` (see :mod:`cupyssa.expressions`).
    assignments : mapping target -> expression, or sequence of (target, expression)
        Species (value is a count) or parameter targets; expressions read the state before the
        event (and may read ``time``).
    id : str
        Name used in messages.
    initial_value : bool
        Trigger value assumed before ``t0`` (SBML ``initialValue``).
    persistent : bool
        SBML ``persistent`` (matters only for simultaneous events, see the module docstring).
    use_values_from_trigger_time : bool
        SBML ``useValuesFromTriggerTime`` (likewise).
    """

    trigger: object
    assignments: object
    id: str = ""
    initial_value: bool = True
    persistent: bool = True
    use_values_from_trigger_time: bool = True

    def __post_init__(self):
        object.__setattr__(self, "trigger", _node(self.trigger))
        items = self.assignments.items() if isinstance(self.assignments, Mapping) else self.assignments
        object.__setattr__(self, "assignments", tuple((str(k), _node(v)) for k, v in items))
        if not self.assignments:
            raise NetworkError(f"event {self.id!r} has no assignments")

    def __str__(self) -> str:
        body = ", ".join(f"{k} = {to_infix(v)}" for k, v in self.assignments)
        return f"event {self.id or '?'}: when {to_infix(self.trigger)}: {body}"


@dataclass
class EventModel(Model):
    """A :class:`~cupyssa.models.Model` with events (what :func:`cupyssa.read_sbml` returns);
    :func:`cupyssa.simulate` accepts it directly and applies the events.

    Attributes
    ----------
    events : tuple of Event
        In document order (the order of simultaneous firings).
    """

    events: tuple = ()

    def __post_init__(self):
        self.events = tuple(self.events)


@dataclass
class _Resolved:
    index: int
    id: str
    trigger: Node
    kind: str  # "time" or "state"
    threshold: Node | None
    targets: list  # (kind, column, name, tree)
    initial_value: bool
    persistent: bool
    uvftt: bool
    slot: int = -1  # column among the state triggers
    time: float = np.nan
    extra: dict = field(default_factory=dict)


def _time_threshold(trigger: Node):
    """``t_e`` of a ``time >= t_e``-like trigger, else None."""
    if isinstance(trigger, Call) and len(trigger.args) == 2:
        a, b = trigger.args
        if trigger.op in ("ge", "gt") and isinstance(a, Time):
            return b
        if trigger.op in ("le", "lt") and isinstance(b, Time):
            return a
    return None


def _resolve_events(network, events: Sequence[Event]) -> list:
    sidx = {s: i for i, s in enumerate(network.species)}
    pidx = {p: i for i, p in enumerate(network.parameters)}
    out = []
    assigned_params = set()
    for i, ev in enumerate(events):
        if not isinstance(ev, Event):
            raise NetworkError(f"model events must be cupyssa.events.Event objects, got {ev!r}")
        name = ev.id or f"event{i}"
        ctx = f"event {name!r}"
        trigger = resolve_tree(ev.trigger, sidx, pidx, allow_time=True, context=f"{ctx} trigger")
        if not is_boolean(trigger):
            raise NetworkError(f"{ctx}: the trigger {to_infix(ev.trigger)!r} is not a condition")
        targets = []
        for target, expr in ev.assignments:
            tree = resolve_tree(expr, sidx, pidx, allow_time=True,
                                context=f"{ctx} assignment to {target!r}")
            if target in sidx:
                targets.append(("species", sidx[target], target, tree))
            elif target in pidx:
                targets.append(("parameter", pidx[target], target, tree))
                assigned_params.add(pidx[target])
            else:
                raise NetworkError(f"{ctx} assigns {target!r}, which is neither a species nor a "
                                   "parameter of the network")
        leaves = symbols(trigger)
        threshold = None
        if Time() in leaves:
            threshold = _time_threshold(trigger)
            if threshold is None or Time() in symbols(threshold) or any(
                    isinstance(n, Species) for n in symbols(threshold)):
                raise NetworkError(
                    f"{ctx}: the trigger {to_infix(ev.trigger)!r} depends on time in a form that "
                    "is not supported; use 'time >= t_e' alone (t_e a constant or parameter), or "
                    "a condition on species and parameters only")
        out.append(_Resolved(i, name, trigger, "time" if threshold is not None else "state",
                             threshold, targets, bool(ev.initial_value), bool(ev.persistent),
                             bool(ev.use_values_from_trigger_time)))
    for ev in out:
        if ev.kind == "time":
            changed = {n.index for n in symbols(ev.threshold) if isinstance(n, Param)} & assigned_params
            if changed:
                raise NetworkError(f"event {ev.id!r}: its trigger time reads parameter "
                                   f"{network.parameters[min(changed)]!r}, which an event changes; "
                                   "not supported")
    return out


class _EventKernelNetwork:
    """A view of a network whose compiled kernels also carry a generated ``event_trigger``."""

    def __init__(self, base, functions: dict):
        self._base = base
        self._functions = functions

    def kernel_functions(self) -> dict:
        return self._functions

    def __getattr__(self, name):
        return getattr(self._base, name)


def trigger_source(network, state_events: Sequence[_Resolved]) -> str:
    """Source of ``event_trigger(x, t, theta)``: true when a state trigger differs from its last
    value, stored as 1.0 / 0.0 in ``theta[P + slot]``."""
    P = network.n_parameters
    lines = ["def event_trigger(x, t, theta):"]
    for ev in state_events:
        cond = python_source(ev.trigger)
        lines.append(f"    # {ev.id}")
        lines.append(f"    if (1.0 if {cond} else 0.0) != theta[{P + ev.slot}]:")
        lines.append("        return True")
    lines.append("    return False")
    return "\n".join(lines) + "\n"


def _kernel_network(network, state_events):
    if not state_events:
        return network
    source = trigger_source(network, state_events)
    base_functions = network.kernel_functions()
    key = (source, tuple(sorted((name, id(fn)) for name, fn in base_functions.items())))
    cache = network.__dict__.setdefault("_event_kernel_networks", {})
    view = cache.get(key)
    if view is None:
        functions = {**base_functions, "event_trigger": load_function(source, "event_trigger")}
        view = _EventKernelNetwork(network, functions)
        cache[key] = view
    return view


class EventDriver:
    """Runs trajectory segments between events and applies the events (used by
    :func:`cupyssa.simulate` for a model with events; see the module docstring).

    Parameters
    ----------
    network : ReactionNetwork
    events : sequence of Event
    theta : ndarray [P] or [n, P]
        The validated parameters of the whole call (for the trigger times).
    backend : str
        ``numpy`` supports time-triggered events only.
    t0 : float
        Initial time.
    """

    def __init__(self, network, events: Sequence[Event], theta: np.ndarray, backend: str,
                 t0: float):
        self.network = network
        self.events = _resolve_events(network, events)
        self.state_events = [e for e in self.events if e.kind == "state"]
        for slot, e in enumerate(self.state_events):
            e.slot = slot
        if self.state_events and backend != "cpu":
            raise ParameterError(f"backend {backend!r} does not support state-triggered events "
                                 f"(event {self.state_events[0].id!r}); use backend='cpu'")
        self.P = network.n_parameters
        self.t0 = float(t0)
        theta = np.atleast_2d(theta)
        for e in self.events:
            if e.kind == "time":
                with np.errstate(all="ignore"):
                    values = np.broadcast_to(np.asarray(evaluate_tree(e.threshold, np.zeros((1, 1)), theta),
                                                        dtype=float), theta.shape[:1])
                if not np.all(np.isfinite(values)):
                    raise ParameterError(f"event {e.id!r}: the trigger time is {values.flat[0]}")
                if np.ptp(values) != 0:
                    raise ParameterError(f"event {e.id!r}: the trigger time differs between "
                                         "trajectories (per-trajectory parameters); not supported")
                e.time = float(values[0])
        self.boundaries = sorted({e.time for e in self.events if e.kind == "time" and e.time > self.t0})
        self.kernel_network = _kernel_network(network, self.state_events)

    # -- evaluation on a set of trajectories ------------------------------------------------
    def _trigger_values(self, x, th, t) -> np.ndarray:
        n = x.shape[0]
        out = np.zeros((n, len(self.state_events)), dtype=bool)
        for e in self.state_events:
            out[:, e.slot] = np.broadcast_to(evaluate_tree(e.trigger, x, th, t), (n,))
        return out

    def _values(self, e, x, th, t):
        return [np.broadcast_to(np.asarray(evaluate_tree(tree, x, th, t), dtype=float), x.shape[:1])
                for _, _, _, tree in e.targets]

    def _apply(self, e, rows, mask, values, x, th, t, first):
        sel = np.flatnonzero(mask)
        for (kind, col, name, _), v in zip(e.targets, values):
            if kind == "parameter":
                th[sel, col] = v
                continue
            r = np.round(v)
            bad = ~np.isfinite(v) | (r < 0) | (np.abs(v - r) > 1e-9 * np.maximum(1.0, np.abs(v)))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                traj, time = first + int(rows[sel[i]]), float(t[sel[i]])
                raise SimulationError(f"trajectory {traj}: event {e.id!r} at t={time:g} assigns "
                                      f"{name!r} = {float(v[i])!r}; species counts must be non-negative "
                                      "integers", traj, time, None)
            x[sel, col] = r.astype(np.int64)

    def _instant(self, seg, rows: np.ndarray, due: Sequence[_Resolved]) -> None:
        """Fire the events of one instant on trajectories ``rows`` (time events ``due`` on all of
        them, state events whose trigger rose), with cascades; store the trigger values."""
        x = seg.x[rows].copy()
        th = seg.theta[rows].copy()
        t = seg.t[rows].copy()
        P, E, n = self.P, len(self.state_events), rows.size
        stored = th[:, P:P + E] > 0.5
        due_ids = {e.index for e in due}
        everyone = np.ones(n, dtype=bool)
        with np.errstate(all="ignore"):
            for round_ in range(MAX_CASCADE + 1):
                now = self._trigger_values(x, th, t)
                rising = now & ~stored
                stored = now
                firing = []
                for e in self.events:
                    mask = (everyone if e.index in due_ids else None) if e.kind == "time" \
                        else rising[:, e.slot]
                    if mask is not None and mask.any():
                        firing.append((e, mask))
                due_ids = set()
                if not firing:
                    break
                if round_ == MAX_CASCADE:
                    i = int(np.flatnonzero(firing[0][1])[0])
                    traj = seg.first + int(rows[i])
                    raise SimulationError(f"trajectory {traj}: events keep triggering each other at "
                                          f"t={t[i]:g} (more than {MAX_CASCADE} rounds; event "
                                          f"{firing[0][0].id!r})", traj, float(t[i]), None)
                early = {e.index: self._values(e, x, th, t) for e, _ in firing if e.uvftt}
                for e, mask in firing:
                    if e.kind == "state" and not e.persistent:
                        mask = mask & np.broadcast_to(evaluate_tree(e.trigger, x, th, t), (n,))
                        if not mask.any():
                            continue
                    values = early[e.index] if e.index in early else self._values(e, x, th, t)
                    self._apply(e, rows, mask, [v[mask] for v in values], x, th, t, seg.first)
        th[:, P:P + E] = stored
        seg.x[rows] = x
        seg.theta[rows] = th

    # -- one chunk ---------------------------------------------------------------------------
    def run(self, impl, seg, t_eval, seed: int, max_steps: int) -> np.ndarray:
        """Simulate the chunk ``seg`` to the end of ``t_eval`` with the events; returns the number
        of reaction events per trajectory."""
        from .simulate import raise_failure

        N, T = seg.states.shape[0], seg.states.shape[1]
        P, E = self.P, len(self.state_events)
        theta = np.empty((N, P + E))
        theta[:, :P] = np.broadcast_to(seg.theta, (N, seg.theta.shape[-1]))
        for e in self.state_events:
            theta[:, P + e.slot] = float(e.initial_value)
        seg.theta = np.ascontiguousarray(theta)
        all_rows = np.arange(N)
        self._instant(seg, all_rows, [e for e in self.events if e.kind == "time"
                                      and e.time <= self.t0 and not e.initial_value])
        RUNNING, PARKED, DONE = 0, 1, 2
        mode = np.zeros(N, dtype=np.int8)
        stops = np.zeros(N, dtype=np.int64)
        allowed = (codes.OK, codes.STOPPED, codes.TRIGGERED)
        for tb in self.boundaries + [np.inf]:
            while True:
                running = mode == RUNNING
                if not running.any():
                    break
                parked = np.flatnonzero(mode == PARKED)
                saved = seg.obs[parked].copy()
                seg.obs[parked] = T  # finished in the kernel's eyes: returns at once, draws nothing
                try:
                    status, fail = impl.simulate_segment(self.kernel_network, seg, tb, t_eval,
                                                         seed, max_steps)
                finally:
                    seg.obs[parked] = saved
                status = np.where(running, status, codes.OK)
                raise_failure(self.network, status, seg, max_steps, fail, allowed=allowed)
                mode[running & (status == codes.OK)] = DONE
                stopped = status == codes.STOPPED
                mode[stopped] = PARKED
                stops[stopped] += 1
                triggered = np.flatnonzero(status == codes.TRIGGERED)
                if triggered.size:
                    self._instant(seg, triggered, ())
            rows = np.flatnonzero(mode == PARKED)
            if rows.size:
                self._instant(seg, rows, [e for e in self.events if e.kind == "time" and e.time == tb])
                mode[rows] = RUNNING
        return seg.k - stops
