"""Chaotic data: flows integrated by the project, their Lyapunov exponents, and the metrics of a
reconstruction (Mikhaeil, Monfared & Durstewitz, NeurIPS 2022).

Data. Lorenz-63 (sigma 10, rho 28, beta 8/3) and Roessler (a 0.2, b 0.2, c 5.7) are integrated with
the classical fourth-order Runge-Kutta method at a fixed step dt, one RK4 step per sample. The
initial condition is a fixed point of the phase space plus a seeded Gaussian kick; a transient is
discarded so that the samples lie on the attractor. One trajectory is split in time: the first
`train_steps` samples are the training set, the next `test_steps` the test set. Both are standardized
with the mean and standard deviation of the training set (a linear change of coordinates, so the
Lyapunov exponents do not change).

Exponents. `flow_lyapunov` runs the project's `lyapunov_spectrum` on the RK4 step itself, i.e. the
exponents of the sampled map, per sample step; divided by dt they are per time unit and converge to
those of the flow as dt -> 0. The tangent of the RK4 step is exact (the variational equation pushed
through the same four stages), so the estimate has no finite-difference error.

Metrics of a generated trajectory against data (both (T, D) arrays):

- `state_space_divergence` (D_stsp): KL(p_data || p_model) between binned occupancies. Bins: `bins`
  per dimension spanning the data's range in each dimension; model points outside that range (and
  non-finite ones) are counted in the nearest edge bin, so mass that leaves the attractor still counts
  as misplaced instead of being dropped. Empty bins get a Laplace pseudo-count `alpha` (default
  1e-5 per bin, added to the counts before normalising), so the KL is finite; for identical inputs
  it is exactly 0.
- `authors_state_space_divergence`: D_stsp as the STF authors' evaluation computes it (10 bins over
  +-2 sd of the data, points outside dropped), for `train.dstsp_convention: authors`.
- `power_spectrum_distance` (D_H): per dimension, Welch power spectra (Hann window, `segment` samples,
  half overlap) of the standardized series, smoothed by a Gaussian of `smoothing` frequency bins and
  normalised to unit sum; the Hellinger distance sqrt(1 - sum sqrt(p q)) between them, averaged over
  dimensions. 0 for identical spectra, 1 for disjoint ones (and for non-finite trajectories).
"""

from __future__ import annotations

from flosssweep.chaos.metrics import (
    AUTHORS_FREE_RUN,
    authors_state_space_divergence,
    power_spectrum,
    power_spectrum_distance,
    state_space_divergence,
)
from flosssweep.chaos.systems import (
    SYSTEMS,
    ChaoticData,
    flow_lyapunov,
    forcing_interval,
    integrate,
    make_data,
    rk4_step,
    rk4_tangent,
)

__all__ = [
    "AUTHORS_FREE_RUN",
    "SYSTEMS",
    "ChaoticData",
    "authors_state_space_divergence",
    "flow_lyapunov",
    "forcing_interval",
    "integrate",
    "make_data",
    "power_spectrum",
    "power_spectrum_distance",
    "rk4_step",
    "rk4_tangent",
    "state_space_divergence",
]
