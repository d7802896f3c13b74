"""Percentile bootstrap over sessions for the adaptive-playlisting study.

Sessions are the unit of resampling: events of one session are dependent,
sessions are not. Paired statistics resample the same sessions for every
strategy, which all see the same sampled listeners and mood switches, so what
the sessions share cancels.

  `bootstrap_ci`       mean of per-session values with its CI.
  `paired_bootstrap`   mean difference of two strategies on the same sessions.
  `gain_share`         the share of the oracle's gain over a reference (e.g.
                       the initial order) that a strategy captures, a ratio
                       of paired means, with its CI.
  `bootstrap_columns`  many weighted means at once on shared resamples (what
                       `summary.summarize` uses).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def _resample_counts(num_sessions: int, num_resamples: int, seed: int) -> Iterator[np.ndarray]:
  """Chunks of [n, B] multiplicities of the sessions in each bootstrap resample."""
  rng = np.random.default_rng(seed)
  chunk = max(1, 4_000_000 // max(num_sessions, 1))
  for start in range(0, num_resamples, chunk):
    n = min(chunk, num_resamples - start)
    index = rng.integers(0, num_sessions, size=(n, num_sessions))
    index += num_sessions * np.arange(n)[:, None]
    yield np.bincount(index.ravel(), minlength=n * num_sessions).reshape(
        n, num_sessions).astype(np.float64)


def bootstrap_columns(values: np.ndarray, weights: np.ndarray, num_resamples: int,
                      seed: int, confidence: float) -> tuple[np.ndarray, ...]:
  """Weighted means of the columns of [B, M] values and their percentile CIs.

  Non-finite values and zero weights leave a session out of that column. All
  columns share the resamples (so a given seed gives the same CI whichever
  other columns come along).

  Returns:
    (point, lo, hi, sessions kept), each [M].
  """
  point, resampled, count = _resampled_means(values, weights, num_resamples, seed)
  lo, hi = _percentiles(resampled, confidence)
  return point, lo, hi, count


def _resampled_means(values: np.ndarray, weights: np.ndarray, num_resamples: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(point [M], resampled [R, M], sessions kept [M]) weighted means of [B, M] columns."""
  values = np.asarray(values, np.float64)
  weights = np.broadcast_to(np.asarray(weights, np.float64), values.shape)
  keep = np.isfinite(values) & (weights > 0)
  weights = np.where(keep, weights, 0.0)
  weighted = np.where(keep, values, 0.0) * weights
  with np.errstate(invalid="ignore", divide="ignore"):
    point = weighted.sum(0) / weights.sum(0)
    resampled = np.concatenate([(counts @ weighted) / (counts @ weights) for counts in
                                _resample_counts(values.shape[0], num_resamples, seed)])
  return point, resampled, keep.sum(0)


def _percentiles(resampled: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
  """Percentile CI bounds [M] of [R, M] resampled statistics (NaN where none is finite)."""
  alpha = 100.0 * (1.0 - confidence) / 2.0
  lo, hi = np.full(resampled.shape[1:], np.nan), np.full(resampled.shape[1:], np.nan)
  defined = np.isfinite(resampled).any(0)
  if defined.any():
    lo[defined], hi[defined] = np.nanpercentile(resampled[:, defined], [alpha, 100.0 - alpha],
                                                axis=0)
  return lo, hi


def bootstrap_ci(a: np.ndarray, num_resamples: int = 2000, seed: int = 0, *,
                 weights: np.ndarray | None = None,
                 confidence: float = 0.95) -> tuple[float, float, float]:
  """Mean of per-session values with a percentile bootstrap CI over sessions.

  Args:
    a: [B] per-session values; NaN leaves a session out.
    num_resamples: bootstrap resamples of the B sessions (with replacement).
    seed: numpy seed of the resamples.
    weights: optional [B] session weights (e.g. the number of mood switches,
      for a mean over switches clustered by session); the mean is
      sum(w a) / sum(w) in the sample and in each resample.
    confidence: CI level.

  Returns:
    (mean, lo, hi) floats.
  """
  a = np.asarray(a, np.float64)[:, None]
  w = np.ones_like(a) if weights is None else np.asarray(weights, np.float64)[:, None]
  point, lo, hi, _ = bootstrap_columns(a, w, num_resamples, seed, confidence)
  return float(point[0]), float(lo[0]), float(hi[0])


def paired_bootstrap(a: np.ndarray, b: np.ndarray, num_resamples: int = 2000, seed: int = 0,
                     *, weights: np.ndarray | None = None,
                     confidence: float = 0.95) -> tuple[float, float, float]:
  """Mean difference a - b over the same sessions, with a paired bootstrap CI.

  Each resample draws sessions and takes both strategies' values of those
  sessions, so what the sessions share (listener, mood switches) cancels.

  Args:
    a, b: [B] per-session values of two strategies on the same sessions; a
      session where either is NaN is left out.
    num_resamples, seed, weights, confidence: as in `bootstrap_ci`.

  Returns:
    (mean_diff, lo, hi) floats.
  """
  return bootstrap_ci(np.asarray(a, np.float64) - np.asarray(b, np.float64), num_resamples,
                      seed, weights=weights, confidence=confidence)


def gain_share(strategy: np.ndarray, reference: np.ndarray, oracle: np.ndarray,
               num_resamples: int = 2000, seed: int = 0, *,
               confidence: float = 0.95) -> tuple[float, float, float]:
  """Share of the oracle's gain over `reference` that `strategy` captures, with a CI.

  share = mean(strategy - reference) / mean(oracle - reference), the means
  over the same sessions; each bootstrap resample draws sessions and takes the
  ratio of the resampled means (a ratio of means, not a mean of per-session
  ratios, which a session where the oracle gains nothing would blow up).

  Args:
    strategy, reference, oracle: [B] per-session values (e.g. listen rates);
      a session where any is NaN is left out.
    num_resamples, seed, confidence: as in `bootstrap_ci` (the same seed gives
      the same resamples).

  Returns:
    (share, lo, hi) floats; 1 means the strategy gains as much as the oracle,
    0 no more than the reference. NaN where the oracle's mean gain is 0.
  """
  strategy, reference, oracle = (np.asarray(x, np.float64) for x in (strategy, reference, oracle))
  if not strategy.shape == reference.shape == oracle.shape or strategy.ndim != 1:
    raise ValueError(f"gain_share needs three [B] arrays, got shapes {strategy.shape}, "
                     f"{reference.shape}, {oracle.shape}")
  keep = np.isfinite(strategy) & np.isfinite(reference) & np.isfinite(oracle)
  columns = np.stack([np.where(keep, strategy - reference, np.nan),
                      np.where(keep, oracle - reference, np.nan)], 1)
  point, resampled, _ = _resampled_means(columns, np.ones_like(columns), num_resamples, seed)
  with np.errstate(invalid="ignore", divide="ignore"):
    share = point[0] / point[1] if point[1] != 0 else np.nan
    ratios = np.where(resampled[:, 1] != 0, resampled[:, 0] / resampled[:, 1], np.nan)
  lo, hi = _percentiles(ratios[:, None], confidence)
  return float(share), float(lo[0]), float(hi[0])
