import warnings

import numpy as np
import pytest

from shape_inputs import P, T, front, one_map

import caloforge.showers.shapes as shapes
import caloforge.validation.observables as observables
from caloforge.detector import barrel_geometry
from caloforge.validation import (
    HIGH_LEVEL_FEATURE_NAMES,
    cell_energy_spectrum,
    distance_to_entry_cm,
    high_level_features,
    lat_moment,
    second_moment_cm2,
    sparsity,
    stack_features,
    widths_and_asymmetries,
    zernike_moments,
)



def test_shower_shapes_are_re_exported_from_showers_shapes():
    moved = [name for name in observables.__all__ if hasattr(shapes, name)]
    assert {"e_nxn", "lat_moment", "zernike_moments", "widths_and_asymmetries", "LAT_R0_CM"} <= set(moved)
    for name in moved:
        assert getattr(observables, name) is getattr(shapes, name), name
    for name in observables.__all__:
        assert hasattr(observables, name), name


def test_sparsity_and_cell_spectrum():
    m = one_map({(0, 0): 0.0005, (5, 5): 0.002, (10, 10): 0.01})
    frac = sparsity(m, [0.0, 0.001, 0.005, 0.1])
    assert frac.shape == (1, 4)
    assert np.allclose(frac[0], np.array([3, 2, 1, 0]) / 121)
    assert sparsity(m, 0.001).shape == (1,)
    assert np.allclose(np.sort(cell_energy_spectrum(m)), [0.0005, 0.002, 0.01])
    assert np.allclose(cell_energy_spectrum(m, 0.001), [0.002, 0.01])


def test_empty_maps_give_nan_or_zero_without_warnings():
    m = np.zeros((2, 11, 11))
    m[1, 5, 5] = 1.0
    entry = np.stack([front(0, 0), front(0, 0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = high_level_features(m, T, P, entry_position_cm=entry)
    assert list(f) == [*HIGH_LEVEL_FEATURE_NAMES, "distance_to_entry_cm"]
    zero = [k for k in f if k.startswith("e") and k.endswith("_gev")] + ["sparsity_1mev"]
    for name, values in f.items():
        assert values.shape == (2,)
        if name in zero:
            assert values[0] == 0.0
        else:
            assert np.isnan(values[0]), name
        assert np.isfinite(values[1]), name
    assert f["distance_to_entry_cm"][1] == pytest.approx(0.0, abs=1e-9)


def test_features_are_vectorised_and_match_single_events():
    rng = np.random.default_rng(1)
    offsets = np.arange(11) - 5
    shape = np.exp(-0.5 * (offsets[:, None] ** 2 + offsets[None, :] ** 2))
    maps = rng.exponential(1.0, size=(5, 11, 11)) * shape
    t = np.array([0, 10, 21, 33, 43])
    p = np.array([0, 50, 119, 7, 60])
    entry = barrel_geometry().front_center_cm[t, p] + rng.normal(0, 1.0, size=(5, 3))
    f = high_level_features(maps, t, p, entry_position_cm=entry)
    for i in range(5):
        g = high_level_features(maps[i : i + 1], t[i], p[i], entry_position_cm=entry[i : i + 1])
        for name in f:
            assert f[name][i] == pytest.approx(g[name][0]), name
    d = distance_to_entry_cm(maps, t, p, entry)
    assert np.allclose(d, f["distance_to_entry_cm"])
    x = stack_features(f, ["lat", "a20"])
    assert x.shape == (5, 2) and np.allclose(x[:, 1], f["a20"])
    assert np.all((f["lat"] >= 0) & (f["lat"] < 1))
    assert np.all((f["a20"] >= 0) & (f["a20"] <= 1) & (f["a42"] >= 0) & (f["a42"] <= 1))
    with pytest.raises(KeyError, match="unknown features"):
        stack_features(f, ["nope"])


def test_high_level_features_are_the_shower_shapes():
    rng = np.random.default_rng(4)
    maps = rng.exponential(0.1, size=(6, 11, 11))
    f = high_level_features(maps, T, P)
    assert np.array_equal(f["second_moment_cm2"], second_moment_cm2(maps, T, P))
    assert np.array_equal(f["lat"], lat_moment(maps, T, P))
    assert np.array_equal(f["a42"], zernike_moments(maps, T, P)[1])
    assert np.array_equal(f["phi_width_crystals"], widths_and_asymmetries(maps)["phi_width_crystals"])
