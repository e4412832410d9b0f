"""cupyssa: exact batched stochastic simulation of chemical reaction networks, gradients
through exact trajectories, and chemical master equation solvers."""

from ._sourcetree import map_source_kernels as _map_source_kernels

_map_source_kernels()

from ._version import __version__  # noqa: E402
from .errors import (CupyssaError, InitialStateError, MaxStepsExceeded, NetworkError,
                     ParameterError, ParseError, SimulationError)
from .network import ReactionNetwork, Reaction
from .result import SimulationResult
from .simulate import simulate
from . import cme, losses, models
from .gradients import Gradient, value_and_grad
from .ratelaws import Hill, HillRepression, MassAction, MichaelisMenten, Neural, RateLaw


def read_sbml(source):
    """Read an SBML Level 2/3 model into a model that :func:`simulate` accepts; see
    :func:`cupyssa.sbml.read_sbml`. Needs the ``sbml`` extra (``python-libsbml``), imported only
    when this is called."""
    from .sbml import read_sbml as _read_sbml

    return _read_sbml(source)


__all__ = [
    "__version__", "simulate", "read_sbml", "SimulationResult", "models", "cme", "losses",
    "value_and_grad", "Gradient", "ReactionNetwork", "Reaction",
    "RateLaw", "MassAction", "Hill",
    "HillRepression", "MichaelisMenten", "Neural", "CupyssaError", "NetworkError", "ParseError",
    "ParameterError", "InitialStateError", "SimulationError", "MaxStepsExceeded",
]
