"""Exceptions raised by cupyssa.

Every error that bad input can cause is one of these, with a message that names the offending
species, parameter, reaction, line or trajectory; kernels report failures through status codes
that the Python layer turns into these exceptions (never a Numba traceback).
"""


class CupyssaError(Exception):
    """Base class of all cupyssa errors."""


class NetworkError(CupyssaError, ValueError):
    """An invalid reaction network: unknown or duplicate names, bad stoichiometry."""


class ParseError(NetworkError):
    """A line of the text network format could not be read.

    Attributes
    ----------
    line_number : int
        1-based line number in the source text.
    line : str
        The offending line.
    """

    def __init__(self, message: str, line_number: int, line: str):
        super().__init__(f"line {line_number}: {message}\n    {line.strip()}")
        self.line_number = line_number
        self.line = line


class ParameterError(CupyssaError, ValueError):
    """Missing, unknown, negative, NaN or infinite parameter values, or wrong shapes."""


class InitialStateError(CupyssaError, ValueError):
    """Negative, non-integer or wrongly shaped initial populations."""


class SimulationError(CupyssaError, RuntimeError):
    """A trajectory failed: ``max_steps`` exceeded, a propensity negative or NaN, or a
    population going negative.

    Attributes
    ----------
    trajectory : int
        Global index of the first failing trajectory.
    time : float
        Simulation time at which it failed.
    reaction : str or None
        Name of the reaction involved, when there is one.
    """

    def __init__(self, message: str, trajectory: int, time: float, reaction: str | None):
        super().__init__(message)
        self.trajectory = trajectory
        self.time = time
        self.reaction = reaction


class MaxStepsExceeded(SimulationError):
    """A trajectory needed more than ``max_steps`` events to reach the last time of ``t_eval``."""
