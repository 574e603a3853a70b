"""caloforge's compiled loops (``_kernels.c``, built by ``pip install``), with their argument types.

The C functions are reached through ctypes on the file of the ``caloforge._kernels`` extension; every array
argument is checked for its dtype and C order at each call (a wrong one raises ``ctypes.ArgumentError``
instead of reading the wrong memory). The callers, :mod:`caloforge.detector.transport` and
:mod:`caloforge.engine.fastsim`, prepare the arrays and document what the loops compute.
"""

from __future__ import annotations

import ctypes

import numpy as np
from numpy.ctypeslib import ndpointer

try:
    from caloforge import _kernels
except ImportError as err:  # a source tree that was never installed
    raise ImportError(
        "caloforge's compiled kernels are missing: install the package with `pip install -e .` (needs a C compiler)"
    ) from err

_F8, _F4, _I8, _U1 = (ndpointer(t, flags="C_CONTIGUOUS") for t in (np.float64, np.float32, np.int64, np.uint8))
_N = ctypes.c_int64
_lib = ctypes.CDLL(_kernels.__file__)


def _declare(name: str, restype, *argtypes):
    function = getattr(_lib, name)
    function.restype, function.argtypes = restype, list(argtypes)
    return function


propagate = _declare(
    "cf_propagate", None,
    _N, _F8, _F8, _F8,  # n, start points (n, 3), unit directions (n, 3), turning rates (n,)
    _F8, _F8, _F8, _F8, _F8, _F8,  # face normals, face centres, edge normals, edge offsets, depths, radii
    _F8, _F8, _I8, _N, _F8,  # ring theta, ring phi0, search offsets (m, 2), m, parameters (8,)
    _U1, _F8, _I8, _I8, _F8, _F8,  # outputs: hit, path, theta_index, phi_index, position, direction
)
helix_points = _declare("cf_helix_points", None, _N, _F8, _F8, _F8, _F8, _F8, _F8)
cylinder_paths = _declare("cf_cylinder_paths", None, _N, _F8, _F8, _F8, ctypes.c_double, _F8)
count_positive = _declare("cf_count_positive", ctypes.c_int64, _N, _F4)
place_showers = _declare("cf_place_showers", ctypes.c_int64, _N, _F4, _I8, _I8, _I8, _I8, _I8, _I8, _F4)
