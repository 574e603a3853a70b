"""What the generators take besides their weights: checked condition arrays and the noise (numpy only, so that
the ONNX Runtime sampler needs no PyTorch)."""

from __future__ import annotations

import numpy as np

from caloforge.detector.conditions import CONDITION_NAMES

N_CONDITIONS = len(CONDITION_NAMES)
NOISE_BOUND = float(np.sqrt(-2.0 * np.log(2.0**-24)))
"""The largest absolute value :func:`gaussian_noise` can give (5.77): the Box-Muller radius of the smallest
float32 ``1 - u``, 2^-24."""


def condition_array(conditions: np.ndarray, n: int | None, batch_size: int) -> np.ndarray:
    """Check the arguments of ``sample``: (N, 6) float32 conditions, or one vector (6,) repeated ``n`` times."""
    c = np.asarray(conditions, dtype=np.float32)
    if c.ndim == 1:
        c = np.broadcast_to(c, (1 if n is None else n, c.shape[0]))
    elif n is not None and n != len(c):
        raise ValueError(f"n={n} does not match the {len(c)} condition vectors given")
    if c.ndim != 2 or c.shape[1] != N_CONDITIONS:
        raise ValueError(f"conditions must have shape (N, {N_CONDITIONS}) or ({N_CONDITIONS},), got {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("conditions contain NaN or infinite values")
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    return c


def noise_buffer_size(rows: int, dim: int) -> int:
    """Elements :func:`gaussian_noise` draws for ``rows`` rows of ``dim`` (a whole number of Box-Muller pairs)."""
    return rows * 2 * ((dim + 1) // 2)


def gaussian_noise(rng: np.random.Generator, rows: int, dim: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """Standard normal float32 noise (rows, dim) from ``rng``: the generators' input, the same on every backend.

    The Box-Muller transform of float32 uniforms, ``sqrt(-2 log(1 - u1)) (cos, sin)(2 pi u2)``, with numpy's
    vectorised log, sine and cosine (faster than ``rng.standard_normal``: ``docs/experiments/gan.md``). Each
    row is made from its own ``2 * ceil(dim / 2)`` consecutive uniforms, so that rows drawn in several blocks are
    the rows drawn at once (sampling does not depend on the batch size). The largest value is :data:`NOISE_BOUND` (5.77 sigma,
    from the float32 uniforms' 2^-24 spacing; a normal law goes beyond once in 10^8 draws).

    ``out``: a C-contiguous float32 buffer of at least ``rows * 2 * ceil(dim / 2)`` elements to draw in (for an
    even ``dim`` the result is a view of it). Reused from call to call, it saves the page faults of fresh
    arrays; the numbers are the same."""
    pairs = (dim + 1) // 2
    size = noise_buffer_size(rows, dim)
    if out is None:
        buffer = np.empty(size, dtype=np.float32)
    else:
        if out.dtype != np.float32 or not out.flags.c_contiguous or out.size < size:
            raise ValueError(f"noise buffer: need a C-contiguous float32 array of at least {size} elements")
        buffer = out.reshape(-1)[:size]
    z = buffer.reshape(rows, 2, pairs)
    rng.random(dtype=np.float32, out=z)
    radius, angle = z[:, 0], z[:, 1]
    np.negative(radius, out=radius)
    np.log1p(radius, out=radius)
    radius *= -2.0
    np.sqrt(radius, out=radius)
    angle *= np.float32(2.0 * np.pi)
    cosine = np.cos(angle)
    np.sin(angle, out=angle)
    angle *= radius  # the sines
    radius *= cosine  # the cosines
    result = buffer.reshape(rows, 2 * pairs)
    return result if dim == 2 * pairs else np.ascontiguousarray(result[:, :dim])
