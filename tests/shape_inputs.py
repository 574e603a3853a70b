"""Hand-made hit maps shared by the shower-shape tests, at a centre crystal far from the barrel ends."""

from __future__ import annotations

import numpy as np

from caloforge.detector import barrel_geometry

T, P = 20, 60  # the centre crystal (theta_index, phi_index)


def one_map(cells: dict[tuple[int, int], float]) -> np.ndarray:
    """A (1, 11, 11) map with the given (row, column) -> GeV cells."""
    m = np.zeros((1, 11, 11))
    for (i, j), e in cells.items():
        m[0, i, j] = e
    return m


def front(offset_theta: int, offset_phi: int) -> np.ndarray:
    """Front-face centre of the crystal at a window offset from (T, P), cm."""
    return barrel_geometry().front_center_cm[T + offset_theta, (P + offset_phi) % 120]
