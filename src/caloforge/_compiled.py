"""caloforge's compiled loops (``_kernels.c``, built by ``pip install``), with checked arguments.

The C functions are reached through ctypes on the file of the ``caloforge._kernels`` extension. Each wrapper
checks the dtype, C order and length of every array before it passes its address (a wrong one raises
``TypeError`` instead of reading the wrong memory); the constant geometry tables are checked once, in
:class:`FaceTables`. Raw addresses instead of numpy's ``ndpointer`` argument types: 27 array arguments per
engine call cost 0.2 ms that way, a fifth of the time of a one-particle call. The callers,
:mod:`caloforge.detector.transport` and :mod:`caloforge.engine.fastsim`, document what the loops compute.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import numpy as np

from caloforge.detector.geometry import N_BARREL, N_THETA, WINDOW

try:
    from caloforge import _kernels
except ImportError as err:  # a source tree that was never installed
    raise ImportError(
        "caloforge's compiled kernels are missing: install the package with `pip install -e .` (needs a C compiler)"
    ) from err

_lib = ctypes.CDLL(_kernels.__file__)
_N, _P, _D = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double


def _declare(name: str, restype, *argtypes):
    function = getattr(_lib, name)
    function.restype, function.argtypes = restype, list(argtypes)
    return function


_propagate = _declare("cf_propagate", None, _N, *[_P] * 10, _P, _P, _N, _P, *[_P] * 6)
_helix_points = _declare("cf_helix_points", None, _N, *[_P] * 6)
_cylinder_paths = _declare("cf_cylinder_paths", None, _N, _P, _P, _P, _D, _P)
_count_positive = _declare("cf_count_positive", _N, _N, _P)
_place_showers = _declare("cf_place_showers", _N, _N, *[_P] * 8)


def _address(a: np.ndarray, dtype: type, shape: tuple[int, ...]) -> int:
    """The data address of ``a``, after checking that it is a C-ordered array of ``dtype`` and ``shape``."""
    if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous and a.shape == shape):
        raise TypeError(f"compiled loop: expected a C-ordered {np.dtype(dtype)} array of shape {shape}, got "
                        f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
    return a.ctypes.data


@dataclass(frozen=True)
class FaceTables:
    """The per-crystal tables of the transport (index ``theta * 120 + phi``), checked once: face normals and
    centres (5280, 3), edge normals (5280, 4, 3) and offsets (5280, 4), neighbour depths and face radii (5280,),
    ring polar angles and phi0 (44,), search offsets (m, 2) int64."""

    axis: np.ndarray
    centre: np.ndarray
    edge_normals: np.ndarray
    edge_offsets: np.ndarray
    depth: np.ndarray
    face_radius: np.ndarray
    ring_theta: np.ndarray
    ring_phi0: np.ndarray
    offsets: np.ndarray
    addresses: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cells, rings, f8 = N_BARREL, N_THETA, np.float64
        shapes = {"axis": (cells, 3), "centre": (cells, 3), "edge_normals": (cells, 4, 3), "edge_offsets": (cells, 4),
                  "depth": (cells,), "face_radius": (cells,), "ring_theta": (rings,), "ring_phi0": (rings,)}
        addresses = [_address(getattr(self, name), f8, shape) for name, shape in shapes.items()]
        addresses.append(_address(self.offsets, np.int64, (len(self.offsets), 2)))
        object.__setattr__(self, "addresses", tuple(addresses))


def propagate(
    x0: np.ndarray, u0: np.ndarray, omega: np.ndarray, tables: FaceTables, params: np.ndarray, hit: np.ndarray,
    path: np.ndarray, theta: np.ndarray, phi: np.ndarray, position: np.ndarray, direction: np.ndarray,
) -> None:
    """``cf_propagate``: start points, unit directions (n, 3), turning rates (n,) float64; the eight parameters;
    outputs hit (n,) uint8, path (n,), theta and phi (n,) int64, position and direction (n, 3)."""
    n = len(omega)
    *table_addresses, offsets_address = tables.addresses
    _propagate(
        n, _address(x0, np.float64, (n, 3)), _address(u0, np.float64, (n, 3)), _address(omega, np.float64, (n,)),
        *table_addresses, offsets_address, len(tables.offsets), _address(params, np.float64, (8,)),
        _address(hit, np.uint8, (n,)), _address(path, np.float64, (n,)), _address(theta, np.int64, (n,)),
        _address(phi, np.int64, (n,)), _address(position, np.float64, (n, 3)),
        _address(direction, np.float64, (n, 3)),
    )


def helix_points(x0: np.ndarray, u0: np.ndarray, omega: np.ndarray, s: np.ndarray, pos: np.ndarray,
                 dirn: np.ndarray) -> None:
    """``cf_helix_points``: positions and directions (n, 3) after paths ``s`` (n,) of helices (n, 3), (n,)."""
    n = omega.size
    v3 = (n, 3)
    _helix_points(n, _address(x0, np.float64, v3), _address(u0, np.float64, v3),
                  _address(omega, np.float64, (n,)), _address(s, np.float64, (n,)),
                  _address(pos, np.float64, v3), _address(dirn, np.float64, v3))


def cylinder_paths(x0: np.ndarray, u0: np.ndarray, omega: np.ndarray, radius_cm: float, out: np.ndarray) -> None:
    """``cf_cylinder_paths``: path of each helix (n, 3), (n,) to the cylinder ``r = radius_cm`` into ``out``."""
    n = omega.size
    _cylinder_paths(n, _address(x0, np.float64, (n, 3)), _address(u0, np.float64, (n, 3)),
                    _address(omega, np.float64, (n,)), float(radius_cm), _address(out, np.float64, (n,)))


def place_showers(
    maps: np.ndarray, theta: np.ndarray, phi: np.ndarray, event_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cf_place_showers`` on maps (n, 11, 11) float32 with centre crystals and event indices (n,) int64:
    event index, cell and energy (float32) of the deposits."""
    n = len(maps)
    maps_address = _address(maps, np.float32, (n, WINDOW, WINDOW))
    order = np.argsort(event_index, kind="stable")
    size = _count_positive(maps.size, maps_address)
    ev, cell, energy = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64), np.empty(size, np.float32)
    written = _place_showers(
        n, maps_address, _address(theta, np.int64, (n,)), _address(phi, np.int64, (n,)),
        _address(event_index, np.int64, (n,)), _address(order, np.int64, (n,)), _address(ev, np.int64, (size,)),
        _address(cell, np.int64, (size,)), _address(energy, np.float32, (size,)),
    )
    if written < 0:
        raise MemoryError("placing the showers ran out of memory")
    return ev[:written], cell[:written], energy[:written]
