"""``cupyssa.cme.solve``: the CME by a variational autoregressive network (VAN).

Method: Tang, Weng & Zhang, Nat. Mach. Intell. 5, 376 (2023) and Weng et al., arXiv:2512.10309
(natural gradient / TDVP time stepping, enhanced sampling). Equations in :mod:`cupyssa.cme.van`.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Mapping, Sequence

import numpy as np

from ..models import Model
from .autoregressive import DEFAULT_ACTIVATION, AutoregressiveModel
from .solution import VANSolution
from .start import fit_to_law, product_short_time_law, short_time_law
from .van import (CMEProblem, ReorderedNetwork, VANError, VANOptions, _check_centring, evolve,
                  fit_initial, make_model, point_mass_log_probs)

__all__ = ["solve"]

#: per-method defaults of (n_iter, lr)
_DEFAULTS = {"tdvp": (1, 1.0), "natgrad": (3, 1.0), "adam": (20, 1e-2)}


def _caps_vector(net, caps) -> np.ndarray:
    if caps is None:
        raise VANError("caps are needed: pass caps=... (mapping species -> cap, or a sequence) or "
                       "use a Model whose metadata holds 'caps'")
    if isinstance(caps, Mapping):
        missing = [s for s in net.species if s not in caps]
        if missing:
            raise VANError(f"no cap for species {missing}")
        unknown = [s for s in caps if s not in net.species]
        if unknown:
            raise VANError(f"caps name unknown species {unknown}")
        caps = [caps[s] for s in net.species]
    c = np.asarray(caps)
    if c.shape != (net.n_species,) or np.any(c < 1) or np.any(c != np.round(c)):
        raise VANError(f"caps must be {net.n_species} positive integers, got {caps!r}")
    return c.astype(np.int64)


def _columns(net, species_order) -> np.ndarray:
    """Network species indices in the factorization order ``species_order`` (None: the
    network's own order)."""
    if species_order is None:
        return np.arange(net.n_species)
    names = list(species_order)
    unknown = [s for s in names if s not in net.species]
    if unknown:
        raise VANError(f"species_order names unknown species {unknown}; the species are "
                       f"{net.species}")
    if sorted(names) != sorted(net.species):
        raise VANError(f"species_order must name every species exactly once: got {names}, the "
                       f"species are {net.species}")
    return np.array([net.species.index(s) for s in names], dtype=np.int64)


def _blas_limit(n):
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        warnings.warn("blas_threads needs threadpoolctl (pip install threadpoolctl); ignored. Set "
                      "OPENBLAS_NUM_THREADS / OMP_NUM_THREADS before starting Python instead.",
                      RuntimeWarning, stacklevel=3)
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n), user_api="blas")


def solve(network, x0=None, t_eval=None, params=None, method: str = "tdvp", *,
          caps: Mapping | Sequence | None = None, species_order: Sequence[str] | None = None,
          model: str | AutoregressiveModel = "nade",
          hidden: int = 32, width: int = 32, depth: int = 2, activation: str = DEFAULT_ACTIVATION,
          output_degree: int | None = None, center_outputs: bool = False,
          inputs: str = "caps", dt: float = 1e-2,
          n_samples: int = 1000, n_iter: int | None = None, lr: float | None = None,
          damping: float = 1e-4, courant: float = 0.2, step_check: float | None = None,
          sampling: str = "tempered",
          alpha: float = 0.5, eps: float = 0.02, reweight: bool = False, frontier: bool = False,
          project_moments: int = 0, projection_draws: int = 20_000,
          project_covariances: bool | Sequence[tuple[str, str]] = False, order: int = 1,
          integrator: str = "euler",
          initial: Callable | None = None, init_time: float | None = None,
          init_law: str = "exact", init_tol: float = 1e-8, init_width: float = 0.2,
          init_iter: int = 200,
          params_at: Callable | None = None,
          n_output_samples: int = 10_000, checkpoint: str | None = None,
          checkpoint_every: int = 100, progress: bool = False, seed: int = 0,
          callback: Callable | None = None, blas_threads: int | None = None) -> VANSolution:
    """Solve the chemical master equation with a variational autoregressive network.

    Parameters
    ----------
    network : ReactionNetwork or Model
        A :class:`~cupyssa.models.Model` supplies defaults for ``x0``, ``params``, ``caps``
        (``metadata["caps"]``) and ``params_at`` (``metadata["params_at"]``).
    x0 : mapping or [S] ints
        Initial state (a point mass, smoothed; see ``init_width``), unless ``initial`` is given.
    t_eval : [T] increasing times; ``t_eval[0]`` is the initial time.
    params : mapping or [P] rate parameters.
    method : {"tdvp", "natgrad", "adam"}
    caps : mapping species -> M_i, or [S]
        Box ``0 <= n_i < M_i`` (reflecting truncation; see :mod:`cupyssa.cme.van`).
    species_order : sequence of all species names, optional
        The factorization order ``P(n) = prod_i P(n_i | n_<i)`` (default: the network's species
        order). It matters: put slow, few-valued variables that the others depend on first
        (toggle switch: the gene states before the proteins; with the interleaved order
        ``Gx, Px, Gy, Py`` the two switched states' weights drifted apart). The solution's
        columns (``sol.species``, samples, ``log_prob``) follow this order.
    model : "nade", "made" or an AutoregressiveModel instance (its parameters are the start;
        its columns follow ``species_order``)
    hidden : NADE width; width, depth : MADE shape
    activation : {"sigmoid", "tanh"}
        NADE's hidden activation (see :class:`~cupyssa.cme.NADE`).
    output_degree : int, optional
        NADE's output weights restricted to polynomials of this degree in each species' value
        (see :class:`~cupyssa.cme.NADE`); None: free.
    center_outputs : bool
        Make each step's Fisher solve in coordinates where NADE's output weights see centred
        hidden units (:meth:`~cupyssa.cme.NADE.centred_outputs`): the biases then take the
        changes of the marginals, and the output weights only what depends on ``n_<i``. Not
        with ``method="adam"`` nor a MADE. On the 3x3 Schlögl lattice with
        ``output_degree=2``, ``activation="tanh"`` and ``inputs="start"`` the law keeps its
        neighbour covariances (6.5-11.7 against SSA's 6.0-8.7 at t = 1, where every earlier setting left
        them between -1 and 2) and the nine single-site marginals come within 0.011-0.015 of
        SSA's at t = 1 on four seeds (the defaults: 0.033-0.034); without centring the sites
        last in the order drifted low (``benchmarks/RESULTS.md``, sessions 28-30).
    inputs : {"caps", "start"}
        What the network is fed: ``"caps"``, the counts over the caps ``n_j / M_j``; ``"start"``,
        the counts standardized by the start law, ``(n_j - mu_j) / max(sigma_j, 1)`` with
        ``mu_j`` and ``sigma_j`` that law's mean and standard deviation of species ``j``
        (:meth:`~cupyssa.cme.AutoregressiveModel.standardize_inputs`). ``"start"`` needs a start
        law known before the evolution: ``init_time``, or the smoothed point mass ``x0`` (no
        ``initial``, no ``model`` instance). On the 3x3 Schlögl lattice, with
        ``activation="tanh"``, it brought the nine single-site marginals within 0.020-0.022 of
        SSA at t = 0.25 (two seeds) where ``n_j / M_j`` and the sigmoid left them within
        0.033-0.035, but by t = 0.5 the last sites of the factorization order had drifted to
        0.050 (0.033-0.036 with the defaults; ``benchmarks/RESULTS.md``, session 27), unless
        ``output_degree=2`` and ``center_outputs=True`` keep the units alive (see there).
    dt : largest time step (with the explicit integrators the step is also limited by
        ``courant / q99(|E|)``; the implicit step is always ``dt``, or what is left to the next
        output time). With fewer samples than network parameters it can set the Monte-Carlo
        error too, also where the law is stationary (:mod:`cupyssa.cme.van`)
    n_samples : samples per step / iteration
    n_iter, lr : iterations per step and step size (defaults: tdvp 1, 1; natgrad 3, 1; adam
        20, 1e-2). For ``tdvp``, ``n_iter > 1`` iterates the step's fit Gauss-Newton fashion on
        the same samples and target (``lr`` is not used): it removes the drift of the one-solve
        (explicit Euler) step in parameter space, which shows when the samples are many
        (toggle switch from the exact law at t = 5, 1,600 samples: 0.05-0.09 Hellinger at
        t = 10 with one solve, 0.017 / 0.027 with ``n_iter=2``); each iteration costs a
        Jacobian and a solve, no local energy.
    damping : relative Fisher damping ``lambda / (mean eigenvalue)``
    courant : the explicit integrators' step is at most ``courant / q99(|E|)`` (``|E|`` the local
        energies of the step's samples: ``h |E|`` is the relative change of ``P`` the step's
        target asks for); ``integrator="implicit"`` does not use it
    step_check : float, optional
        Check every step on a fresh batch: its out-of-sample error ``eta``
        (:func:`cupyssa.cme.van.step_error`; 0 is exact, 1 no better than not moving) above
        ``step_check`` rejects the step, which is redone with half the time step on that batch
        (at most 6 halvings); a halving that does not lower ``eta`` is undone, and the longer
        step kept (``eta`` is an error per unit time: one that halving does not lower is the
        fit's, not the step size's). Costs one more batch with its local energy per step (~+40 %).
        ``stats`` then hold ``step_errors`` (per accepted step), their median and maximum,
        ``n_rejected``, ``n_unresolved`` and ``n_futile_halvings``. The median is the fit's
        quality: with ``N`` samples well below the number of network parameters it can be near 1
        (each step right on its samples and noise elsewhere; only the average over steps is
        right), and a single bad step stands out by far: toggle switch, 400 samples, median
        1.0, 99th percentile 4-6, one step at 51 that threw the marginals from 0.02 to 0.14 in
        Hellinger.
    sampling : "tempered" (default), "exact" or "enumerate"
        The measure the fit is done under (see :func:`cupyssa.cme.van._draw`): "tempered"
        samples the proposal ``(1-eps) softmax(alpha logits) + eps uniform`` per conditional
        (tails get weight: needed for a point-mass start and for rare events); "exact" samples
        ``P_theta``; "enumerate" uses every box state with weights ``∝ P_theta^alpha`` (small
        boxes, no Monte-Carlo noise).
    reweight : with "tempered", weight samples by PSIS-smoothed ``P_theta / q`` instead of
        fitting under the proposal itself
    frontier : with ``integrator="implicit"``, also fit at one successor ``n + s_k`` of each
        sample (a reaction drawn uniformly among those that can fire), so ``2 n_samples`` rows
        per step. Without it, values that no sample reaches cannot gain probability, however
        much the CME sends there: the law's support stops growing at its edge and the means lag
        (MAPK cascade: a cliff of 10 decades above the largest sampled K, whose mean then moved
        at 57-67 % of the CME's rate; see :mod:`cupyssa.cme.van`). Use it where populations grow
        from a narrow start. With it the tails no longer need a flattened proposal: on MAPK,
        ``alpha=1`` moved the means at the CME's rate where ``alpha=0.5`` moved S, K and KK at
        50 %, 65 % and under 20 % of it (t = 10), and was within Hellinger 0.026 of SSA at
        t = 5.
    project_moments : {0, 1, 2}
        After each step, tilt every conditional of the new law,
        ``P(n_i = m | n_<i) -> ∝ P(n_i = m | n_<i) exp(sum_p tau_pi (m / M_i)^p)``, so that the
        means (1), or the means and second moments (2), move as the CME's exact moment
        equations ``d E[x_i^p] / dt = E[sum_k a_k(x) ((x + s_k)_i^p - x_i^p)]`` say, by the
        implicit trapezoid rule (:mod:`cupyssa.cme.moments`). Those averages have no ratios of
        probabilities, so draws of the law estimate them without the heavy tail through which
        a step reads the velocity where the law's tails are thinner than the flow into them
        (MAPK cascade at t = 50, over one time unit: KKpp's mean moves at 0.09 without,
        0.14 with, 0.14 in SSA from the same law; resumed at t = 51 with
        ``project_moments=2``, hidden 8 is within 0.8 % of SSA's means and 0.026 in Hellinger
        on all 16 species at t = 100; ``benchmarks/RESULTS.md``, session 35). A tilt reaches
        every value of a conditional, also those no batch holds. The equations are the law's
        own: the network must hold the correlations the rates depend on. 0 (default):
        off. Costs ``3 projection_draws`` draws of the network, with conditionals and
        propensities, per step (two Newton iterations); ``stats["max_tilt"]`` is the largest
        ``|tau_pi|`` of the run.
    projection_draws : draws of the laws before and after a step that estimate the moments'
        changes, the targets and their response to the tilts; the targets' noise,
        ``h sd(L f) / sqrt(projection_draws)`` per step, is a random force on the moments.
    project_covariances : bool or sequence of (species, species)
        With ``project_moments=2``, also move the products ``E[x_i x_j]`` of pairs of species
        by the trapezoid rule of their equations ``d E[x_i x_j] / dt = E[sum_k a_k(x) (x_i s_kj +
        x_j s_ki + s_ki s_kj)]``: True, the pairs that react together (both reactants of one
        reaction; the products the means' equations read), or the pairs named. No output bias
        couples two species: each pair moves along the parameter change that best makes the
        tilt by its product (a Fisher solve on ``n_samples`` draws, its response measured on as
        many others), solved together with the tilts. Where the steps build the correlations
        of the species that meet at a fraction of the CME's rate, the means projected with
        them go wrong (MAPK from t = 25: Kpp 10 % high at t = 50). With the pairs MAPK's run
        from t = 25 needs no switch-on time: the 8 reacting pairs other than S-KKK, named,
        take hidden 8 from t = 25 to t = 100 within 0.2 % of SSA's means and 0.017 of its
        marginals (``benchmarks/RESULTS.md``, session 37). Experimental, and True is not that
        recipe: the pair S-KKK drives KKK's mean at 7 times SSA's rate (cause not found;
        session 36). Costs a Fisher solve with one right-hand side per pair per step, and one
        pass of ``log P`` over ``n_samples`` draws per pair per Newton iteration.
    order : Taylor order of the step target, 1 (Euler, ``1 + h E``) or 2 (``1 + h E + h^2 E2 / 2``,
        see :func:`cupyssa.cme.van.local_energy`; ``K`` times the work per step, and much
        smaller time-discretization error in far tails: use it for rare events)
    integrator : {"euler", "heun", "implicit"}
        How a ``tdvp`` step moves the network parameters (:mod:`cupyssa.cme.van`): ``"euler"``
        (default) fits the step at ``theta_t``; ``"heun"`` fits it again from that Euler point,
        with the local energy there, and averages (~1.4x the time per step). Heun damps
        the drift that Euler steps accumulate over long times: toggle switch from the exact law
        at t = 5 with 1,600 samples, Hellinger at t = 10 0.012 / 0.006 / 0.006 (three seeds)
        instead of 0.048 / 0.086 (two). It is not second order in time, and where the network
        can represent any law (one species, all states enumerated) its error is 1.3-1.5x
        Euler's. ``"implicit"`` is backward Euler, ``(I - h W) P_{t+h} = P_t``, stable for any
        ``h``: use it for stiff chains, whose explicit steps are limited by the fastest rate in
        the box rather than by how fast the law changes (2-site Schlögl: ``dt=1e-3``, 1,000 steps
        to t = 1 instead of ~27,000; with 2,000 samples the marginals stayed within Hellinger
        0.009 of the exact CME at t = 0.1 and 0.005 at t = 0.5 and 1 on three seeds, a target
        of 0.015 that no explicit setting met on every seed). Start it with ``init_time``; a
        step costs the network's gradients at the samples' predecessors too.
    initial : callable ``log_p0(states [N, S]) -> [N]`` (columns in the network's order), optional
        A user initial distribution, fitted by natural gradient (``init_iter`` iterations) from
        flat conditionals.
    init_iter : iterations of the initial fit: natural-gradient steps for ``initial``, at most
        that many L-BFGS iterations for ``init_time`` (toggle switch: converged after 135).
    init_time : float, optional
        Start from the exact law at ``t_eval[0] + init_time`` instead of evolving the smoothed
        point mass through it (:mod:`cupyssa.cme.start`): the CME is solved exactly on the
        states reachable from ``x0`` in a few events (breadth-first levels added until the
        probability of more events by then is at most ``init_tol``), and the network is fitted
        to that law by minimum cross-entropy. The first steps after a point mass are the
        stiffest of a solve; this skips them (toggle switch with ``init_time=0.1``: ~190-250
        steps to t = 1 instead of ~8,000). Choose a time by which a few events per species have
        happened: the set must stay below ``cupyssa.cme.start.MAX_STATES`` states. The solution
        at ``t_eval[0]`` is the smoothed point mass; ``t_eval[1]`` must be at least
        ``t_eval[0] + init_time``. ``stats`` report ``init_states``, ``init_depth`` (events),
        ``init_lost`` and ``init_kl`` (the fit's ``KL(p || P_theta)`` in nats). Each fitting
        iteration evaluates the network's log-probabilities and their gradient on the whole set
        (toggle switch, ``init_time=0.1``: 1,113 states, ~6 s for the fit; MAPK cascade,
        ``init_time=0.2``: 20,794 states, ~3 s per iteration on a loaded core).
    init_law : {"exact", "product"}
        The law at ``init_time``: ``"exact"`` as above, or ``"product"``, the product of
        per-species laws in which each species' rates are averaged over the other species'
        laws as they evolve (the independent-species closure of the marginals' equations,
        :func:`cupyssa.cme.start.product_short_time_law`), set in the network exactly (no fit).
        It needs ``sum_i M_i`` states where the exact law's set grows with the events of all
        species together (the 3x3 Schlögl lattice), and misses the correlations built by
        ``init_time`` (2-site Schlögl at 0.002: joint Hellinger 0.015, marginals 2e-4).
    init_tol : lost mass accepted for the ``init_time`` law (its 1-norm error bound)
    init_width : width of the smoothed point mass ``p_i(m) ∝ exp(-|m - x0_i| / init_width)``
        (``e^{-1/init_width}`` of the mass per species sits on each neighbour of ``x0``, also on
        states a conservation law excludes, where it stays). The neighbours must be sampled
        from the first step on: with a narrower start raise ``eps`` (``init_width=0.1,
        eps=0.1`` resolved the autoregulatory loop to Hellinger <= 0.013, where the defaults
        were 0.035-0.05 off and ``init_width=0.05, eps=0.02`` failed).
    params_at : callable ``t -> params`` (mapping or [P]) for time-dependent rates
        (constant over each step at its left end).
    n_output_samples : samples kept per output time (marginals, means, covariances)
    checkpoint : path of an ``.npz`` file; parameters are saved every ``checkpoint_every``
        steps, at the last, and when ``callback`` raises (a wall-clock budget or Ctrl-C in the
        callback keeps the step it stopped after), and a run started with an existing
        checkpoint resumes from it (bit for bit: the file holds the generator's state); a
        finished one returns at once.
    progress : show a tqdm bar over time
    seed : seeds sampling (runs are reproducible for a fixed seed)
    callback : ``callback(step, t, model)`` after every step
    blas_threads : limit the BLAS thread pools to this many threads during the solve (through
        ``threadpoolctl`` when it is installed; otherwise a warning, and the limit must be set
        before Python starts, e.g. ``OPENBLAS_NUM_THREADS=1``). ``None`` (default) leaves the
        process's setting alone. The per-step solves are small (an ``N x N`` or ``P x P``
        Cholesky, ``N, P ~ 10^2-10^4``): on a machine whose cores are busy with other work, BLAS
        threads that wait for each other made a 400 x 400 Cholesky ~100x slower (0.8 s instead
        of 0.009 s), and one thread is the right choice there.

    Returns
    -------
    VANSolution
    """
    if isinstance(network, Model):
        m = network
        network = m.network
        x0 = m.x0 if x0 is None else x0
        params = m.params if params is None else params
        caps = m.metadata.get("caps") if caps is None else caps
        params_at = m.metadata.get("params_at") if params_at is None else params_at
    net = network
    if t_eval is None:
        raise VANError("t_eval is required")
    t_eval = np.asarray(t_eval, dtype=float).reshape(-1)
    if t_eval.size < 1 or not np.all(np.isfinite(t_eval)) or np.any(np.diff(t_eval) <= 0):
        raise VANError("t_eval must be finite and strictly increasing")
    theta = net.parameter_vector(params)
    if theta.ndim != 1:
        raise VANError("per-trajectory parameters are not meaningful for the CME")
    x = net.initial_vector(x0)
    if x.ndim != 1:
        raise VANError("x0 must be a single state")
    capv = _caps_vector(net, caps)
    if np.any(x >= capv):
        raise VANError(f"x0 {x.tolist()} lies outside the caps {capv.tolist()}")
    columns = _columns(net, species_order)
    # from here on every state vector is in the factorization order
    x, capv, system = x[columns], capv[columns], ReorderedNetwork(net, columns)
    rates_at = None
    if params_at is not None:
        def rates_at(t, _f=params_at):
            return net.parameter_vector(_f(t))
    if init_time is not None:
        if initial is not None:
            raise VANError("give either initial (a distribution at t_eval[0]) or init_time "
                           "(the exact law shortly after the point mass x0), not both")
        if not (np.isfinite(init_time) and init_time > 0):
            raise VANError(f"init_time must be a positive time, got {init_time!r}")
        if t_eval.size < 2 or t_eval[0] + init_time > t_eval[1]:
            raise VANError(f"init_time={init_time!r} must not pass the first output time after "
                           f"t_eval[0] (t_eval = {t_eval[:2].tolist()}...)")
        if not (0 < init_tol < 1):
            raise VANError(f"init_tol must be in (0, 1), got {init_tol!r}")
    if init_law not in ("exact", "product"):
        raise VANError(f"unknown init_law {init_law!r}; choose 'exact' or 'product'")
    if inputs not in ("caps", "start"):
        raise VANError(f"unknown inputs {inputs!r}; choose 'caps' or 'start'")
    if inputs == "start" and init_time is None and (
            initial is not None or isinstance(model, AutoregressiveModel)):
        raise VANError("inputs='start' standardizes the network's inputs by the start law: it "
                       "needs init_time or the point mass x0, not initial or a model instance")
    if method not in _DEFAULTS:
        raise VANError(f"unknown method {method!r}; choose 'tdvp', 'natgrad' or 'adam'")
    d_iter, d_lr = _DEFAULTS[method]
    opts = VANOptions(method=method, dt=dt, n_samples=n_samples,
                      n_iter=d_iter if n_iter is None else n_iter, lr=d_lr if lr is None else lr,
                      damping=damping, courant=courant, step_check=step_check,
                      sampling=sampling, alpha=alpha, eps=eps,
                      reweight=reweight, frontier=frontier, project_moments=project_moments,
                      projection_draws=projection_draws,
                      project_covariances=project_covariances, center_outputs=center_outputs,
                      order=order, integrator=integrator,
                      checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
                      seed=seed, callback=callback)
    opts.validate()
    rng = np.random.default_rng([seed, 12345])
    if isinstance(model, AutoregressiveModel):
        if not np.array_equal(model.caps, capv):
            raise VANError(f"model caps {model.caps.tolist()} differ from caps {capv.tolist()}")
        ar = model.copy()
        _check_centring(ar, opts)
    else:
        ar = make_model(model, capv, rng, hidden=hidden, width=width, depth=depth,
                        activation=activation, output_degree=output_degree)
        _check_centring(ar, opts)
        if initial is None:
            if inputs == "start" and init_time is None:
                ar.standardize_inputs(x, np.ones(len(x)))
            ar.set_marginal_bias(point_mass_log_probs(x, capv, init_width))
        else:
            enumerated = ar.enumerate_states() if sampling == "enumerate" else None
            back = np.argsort(columns)  # factorization order -> network order

            def log_p0(states, _f=initial):
                return _f(states[:, back])

            fit_initial(ar, log_p0, opts, rng, n_iter=init_iter, enumerated=enumerated)
    rows = n_samples * (2 if frontier else 1)  # the frontier adds up to one row per sample
    if integrator == "implicit" and sampling != "enumerate" and rows < ar.n_params:
        # 2-site Schlögl lattice, 1,554 parameters: 500 samples drifted to Hellinger 0.05 by
        # t = 1 where 2,000 stayed within 0.007, and n_iter=2 with 500 samples diverged (0.3-0.5
        # at t = 0.1): the step then fits its samples, not the law between them
        warnings.warn(
            f"integrator='implicit' with n_samples={n_samples}"
            f"{f' ({rows} rows with the frontier)' if frontier else ''} below the network's "
            f"{ar.n_params} parameters: implicit steps drift in that regime"
            f"{' and n_iter > 1 diverged there' if opts.n_iter > 1 else ''} (see "
            "cupyssa.cme.van); use more samples or a smaller network", RuntimeWarning,
            stacklevel=2)
    prob = CMEProblem(system, x, theta, capv, rates_at)
    with _blas_limit(blas_threads):
        if init_time is None:
            thetas, stats = evolve(prob, ar, t_eval, opts)
        else:
            thetas, stats = _evolve_from_short_time_law(prob, ar, t_eval, opts, init_time,
                                                        init_law, init_tol, init_iter,
                                                        standardize=inputs == "start")
    return VANSolution(t_eval, system.species, ar, thetas, stats, method,
                       n_output_samples=n_output_samples, seed=seed)


def _evolve_from_short_time_law(prob, model, t_eval, opts, init_time, init_law, init_tol,
                                init_iter, standardize=False):
    """:func:`~cupyssa.cme.van.evolve` started from the law at ``t_eval[0] + init_time``
    (:mod:`cupyssa.cme.start`; ``init_law`` "exact" or "product"), with the network's inputs
    standardized by that law if ``standardize``. The parameters reported at ``t_eval[0]`` stay
    those of the smoothed point mass that ``model`` holds on entry (with the inputs the network
    has on exit)."""
    t0 = float(t_eval[0])
    at_t0 = model.theta.copy()
    if init_law == "product":
        laws = product_short_time_law(prob.network, prob.x0, prob.rates(t0), prob.caps,
                                      init_time)
        if standardize:
            _standardize(model, *np.transpose([_moments(np.arange(len(p)), p) for p in laws]))
        # log 0 (states out of reach by then) floored: log-probabilities stay finite
        model.set_product_law([np.log(np.maximum(p, _FLOOR)) for p in laws])
        info = dict(init_law="product")
    else:
        law = short_time_law(prob.network, prob.x0, prob.rates(t0), prob.caps, init_time,
                             init_tol)
        # the fit starts from flat conditionals, not from the point mass: the states outside
        # the set keep roughly what the start gives them, and the point mass's tails
        # e^{-|m - x0| / w} make steep ratios P(n - s_k) / P(n), i.e. a huge local energy
        # (toggle switch, init_time=0.1, 400 samples: from the point mass's tails 1,720 steps
        # to t = 0.2 and Hellinger 0.11 there; from flat ones 162 steps to t = 0.5, and 0.015
        # at t = 0.2)
        if standardize:
            _standardize(model, *_moments(law.states, law.p))
        model.set_marginal_bias([np.zeros(int(c)) for c in prob.caps])
        kl = fit_to_law(model, law.states, law.p, max_iter=init_iter)
        info = dict(init_law="exact", init_states=len(law.states), init_depth=law.depth,
                    init_lost=law.lost, init_kl=kl)
    start = t0 + init_time
    if start < t_eval[1]:  # the fitted start is no output time: drop its row
        thetas, stats = evolve(prob, model, np.r_[start, t_eval[1:]], opts)
        thetas = thetas[1:]
    else:  # it is t_eval[1]
        thetas, stats = evolve(prob, model, t_eval[1:], opts)
    thetas = np.concatenate([at_t0[None, :], thetas])
    stats.update(info)
    return thetas, stats


def _moments(values, weights):
    """Mean and variance of ``values`` ([K] or [K, S]) under ``weights`` ([K], unnormalized)."""
    w = weights / weights.sum()
    mean = w @ values
    return mean, w @ (values - mean) ** 2


def _standardize(model, mean, var):
    """Inputs ``(n - mean) / max(sd, 1)``: a start narrower than one count would make the
    inputs of the later, wider law large, and the hidden units saturate on it."""
    model.standardize_inputs(mean, np.maximum(np.sqrt(var), 1.0))


#: probability floor of the product start's states that are out of reach by ``init_time``
_FLOOR = 1e-300
