"""Shower maths: the one home of the shower shapes of hit maps and of the binned sample comparisons.

A stage after :mod:`caloforge.detector` and :mod:`caloforge.data`, before :mod:`caloforge.models`; the
validation, the training's checkpoint selection and the models' loss terms all take their shower maths
from here.

* :mod:`caloforge.showers.compare` -- binned comparisons of two samples (pure numpy): separation power
  (CaloChallenge 2022 triangular discrimination) and chi^2/ndf of two histograms given as counts, and
  the robust width sigma68.
* :mod:`caloforge.showers.shapes` -- the BESIII shower shapes of 11x11 hit maps (numpy, vectorised over
  events), as BOSS ``EmcRecShowerShape`` defines them: E1x1 ... E11x11 and their ratios, energy
  profiles, widths and asymmetries, energy-weighted centre, centre offsets, distance to the entry
  point, lateral second moment, LAT, Zernike A20/A42; in cm (crystal front-face centres, for the
  validation) and in crystal units (the window grid, for the training's selection metric).
* :mod:`caloforge.showers.shapes_torch` -- the differentiable PyTorch twins of the crystal-unit shapes
  that the GAN's loss terms use (containment fractions, shape ratios, lateral moments, LAT).

Importing this package imports none of them (in particular not torch): import the module you need.
"""
