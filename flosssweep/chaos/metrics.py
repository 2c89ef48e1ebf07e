"""How close a generated trajectory is to chaotic data: D_stsp (state space) and D_H (power spectra)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import welch

# --------------------------------------------------------------------------------------------

DSTSP_BINS = 30
DSTSP_ALPHA = 1e-5


def _bin_index(points: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """Flat bin index of each point; outside the range (or non-finite) goes to the nearest edge bin."""
    points = np.where(np.isfinite(points), points, np.inf)
    scaled = (points - lo) / np.where(hi > lo, hi - lo, 1.0) * bins
    idx = np.clip(np.nan_to_num(np.floor(scaled), nan=bins - 1, posinf=bins - 1, neginf=0), 0, bins - 1)
    return np.ravel_multi_index(idx.astype(np.int64).T, (bins,) * points.shape[1])


def occupancy(
    points: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int = DSTSP_BINS, alpha: float = DSTSP_ALPHA
) -> np.ndarray:
    """Laplace-smoothed normalised histogram (flat, bins**D entries) of the points."""
    counts = np.bincount(_bin_index(points, lo, hi, bins), minlength=bins ** points.shape[1]).astype(np.float64)
    return (counts + alpha) / (counts.sum() + alpha * counts.size)


def _trajectories(x) -> np.ndarray:
    """(T, D) or (n, T, D) -> (n, T, D) float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected a (T, D) or (n, T, D) array, got shape {x.shape}")
    return x


def state_space_divergence(data, generated, bins: int = DSTSP_BINS, alpha: float = DSTSP_ALPHA) -> float:
    """D_stsp = KL(p_data || p_generated) of binned occupancies (see the module docstring).
    data and generated: (T, D) or (n, T, D) arrays (n trajectories pooled) of the same D; bins**D
    cells, so meant for D <= 4."""
    data, generated = _trajectories(data), _trajectories(generated)
    if data.shape[-1] != generated.shape[-1]:
        raise ValueError(f"data and generated differ in dimension: {data.shape[-1]} vs {generated.shape[-1]}")
    if data.shape[-1] > 4:
        raise ValueError(f"binned D_stsp is for D <= 4 dimensions, got {data.shape[-1]}")
    data, generated = data.reshape(-1, data.shape[-1]), generated.reshape(-1, data.shape[-1])
    lo, hi = data.min(axis=0), data.max(axis=0)
    hi = hi + 1e-9 * np.maximum(1.0, np.abs(hi))  # the data maximum falls inside the last bin
    p = occupancy(data, lo, hi, bins, alpha)
    q = occupancy(generated, lo, hi, bins, alpha)
    return float(np.sum(p * (np.log(p) - np.log(q))))


# The STF authors' evaluation (main_eval.py and evaluation/klx.py of DurstewitzLab/ChaosRNN, commit
# 0e84b30): 10 bins per dimension over +-2 sd of the data around 0 (their data are standardized), one
# free run of 100 000 steps.
AUTHORS_BINS = 10
AUTHORS_SPREAD = 2.0
AUTHORS_FREE_RUN = 100_000


def authors_state_space_divergence(data, generated, bins: int = AUTHORS_BINS, alpha: float = DSTSP_ALPHA) -> float:
    """D_stsp in the STF authors' convention: KL(p_data || p_generated) of occupancies on `bins` bins per
    dimension spanning [-2 sd, 2 sd] of the data (sd with Bessel's correction, as torch's default).
    Points outside that box, non-finite ones, and, as the authors' histogram keeps only bin indices
    above 0, those of the lowest bin of any dimension are dropped, not counted; the Laplace pseudo-count
    `alpha` is spread over all bins**D cells as theirs is. NaN when no point of either set is kept."""
    data, generated = _trajectories(data), _trajectories(generated)
    if data.shape[-1] != generated.shape[-1]:
        raise ValueError(f"data and generated differ in dimension: {data.shape[-1]} vs {generated.shape[-1]}")
    data, generated = data.reshape(-1, data.shape[-1]), generated.reshape(-1, data.shape[-1])
    half = AUTHORS_SPREAD * data.std(axis=0, ddof=1)
    cells = bins ** data.shape[1]

    def occupancy_kept(points: np.ndarray) -> np.ndarray | None:
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = np.trunc((points + half) / (2 * half) * bins)  # truncation toward 0, as torch's .long()
            kept = np.isfinite(scaled).all(axis=1) & (scaled > 0).all(axis=1) & (scaled < bins).all(axis=1)
        if not kept.any():
            return None
        index = np.ravel_multi_index(scaled[kept].astype(np.int64).T, (bins,) * points.shape[1])
        counts = np.bincount(index, minlength=cells).astype(np.float64)
        return (counts + alpha) / (counts.sum() + alpha * cells)

    p, q = occupancy_kept(data), occupancy_kept(generated)
    if p is None or q is None:
        return float("nan")
    return float(np.sum(p * (np.log(p) - np.log(q))))


def power_spectrum(series, segment: int = 1000, smoothing: float = 2.0) -> np.ndarray:
    """Smoothed, normalised power spectrum of each dimension of (T, D) or (n, T, D) series: Welch
    periodograms (Hann window, `segment` samples, half overlap) of each standardized trajectory,
    averaged over trajectories, smoothed by a Gaussian of `smoothing` frequency bins and normalised
    to unit sum. Returns (D, frequencies)."""
    x = _trajectories(series)
    std = x.std(axis=1, keepdims=True)
    x = (x - x.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
    _, psd = welch(x, nperseg=min(segment, x.shape[1]), axis=1)
    psd = psd.mean(axis=0).T
    if smoothing > 0:
        psd = gaussian_filter1d(psd, smoothing, axis=-1, mode="nearest")
    return psd / psd.sum(axis=-1, keepdims=True)


def power_spectrum_distance(data, generated, segment: int = 1000, smoothing: float = 2.0) -> float:
    """D_H: Hellinger distance between the smoothed power spectra (`power_spectrum`), averaged over
    dimensions; 1.0 (the maximum) when a generated trajectory is not finite or is constant."""
    generated = _trajectories(generated)
    if not np.isfinite(generated).all() or (generated.std(axis=1) == 0).any():
        return 1.0
    segment = min(segment, generated.shape[1], _trajectories(data).shape[1])
    p = power_spectrum(data, segment, smoothing)
    q = power_spectrum(generated, segment, smoothing)
    overlap = np.sqrt(p * q).sum(axis=-1)
    return float(np.sqrt(np.clip(1.0 - overlap, 0.0, 1.0)).mean())
