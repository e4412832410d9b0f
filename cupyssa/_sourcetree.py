"""Make ``cupyssa.kernels`` importable from a source checkout.

``setup.cfg`` installs the top-level ``kernels/`` directory as the subpackage ``cupyssa.kernels``
(``package_dir``). When Python imports ``cupyssa`` straight from a checkout instead — e.g.
``python -m pytest`` run at the repository root puts the checkout first on ``sys.path`` — there
is no ``cupyssa/kernels`` directory, so the same mapping is made here.
"""

import importlib.util
import os
import sys


def map_source_kernels() -> None:
    package_dir = os.path.dirname(os.path.abspath(__file__))
    if os.path.isdir(os.path.join(package_dir, "kernels")) or "cupyssa.kernels" in sys.modules:
        return  # installed layout, or already mapped
    kernels_dir = os.path.join(os.path.dirname(package_dir), "kernels")
    init = os.path.join(kernels_dir, "__init__.py")
    if not os.path.isfile(init):
        return  # let the ordinary import report the missing subpackage
    spec = importlib.util.spec_from_file_location("cupyssa.kernels", init,
                                                  submodule_search_locations=[kernels_dir])
    module = importlib.util.module_from_spec(spec)
    sys.modules["cupyssa.kernels"] = module
    spec.loader.exec_module(module)
    sys.modules["cupyssa"].kernels = module
