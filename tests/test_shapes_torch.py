"""The differentiable shower shapes (caloforge.showers.shapes_torch), by hand."""

import pytest
import torch

from caloforge.showers.shapes_torch import LAT_R0_CRYSTALS, lateral_moments, lateral_shape_moments


def test_lateral_moments_by_hand():
    maps = torch.zeros(1, 11, 11)
    maps[0, 5, 6] = maps[0, 5, 8] = 0.1  # centre at column +2, one crystal either side
    assert lateral_moments(maps)[0].tolist() == pytest.approx([0.0, 2.0, 1.0])
    assert lateral_moments(torch.zeros(1, 11, 11))[0].tolist() == [0.0, 0.0, 0.0]  # empty map


def test_lateral_shape_moments_by_hand():
    maps = torch.zeros(3, 11, 11)
    maps[0, 5, 5] = 0.5  # one hot crystal: LAT 0
    maps[1, 5, 5], maps[1, 5, 6] = 0.6, 0.3  # two: LAT 0
    maps[2, 5, 5], maps[2, 5, 6], maps[2, 6, 5], maps[2, 5, 3] = 0.4, 0.25, 0.2, 0.15
    out = lateral_shape_moments(maps)
    assert out[:2, 1].tolist() == pytest.approx([0.0, 0.0], abs=1e-7)
    assert out[0, 0].item() == 0.0
    assert out[1, 0].item() == pytest.approx((0.6 * (1 / 3) ** 2 + 0.3 * (2 / 3) ** 2) / 0.9, rel=1e-5)
    # map 2: centre at row +0.2, column -0.05 (crystal units); (5, 5) and (5, 6) are the two hottest
    num = 0.2 * (0.8**2 + 0.05**2) + 0.15 * (0.2**2 + 1.95**2)
    assert out[2, 1].item() == pytest.approx(num / (num + LAT_R0_CRYSTALS**2 * 0.65), rel=1e-5)
