"""Chemical master equation solvers."""

from .fsp import FSPResult as FSPResult
from .fsp import enumerate_states as enumerate_states
from .fsp import fsp as fsp
from .autoregressive import MADE as MADE, NADE as NADE, AutoregressiveModel as AutoregressiveModel
from .sampling import RegionEstimate as RegionEstimate, psis as psis
from .solution import VANSolution as VANSolution
from .solver import solve as solve
from .box import BoxCMEResult as BoxCMEResult, box_cme as box_cme
