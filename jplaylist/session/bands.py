"""Pointwise 95% bands of the study's curves, for the plots of `jplaylist.session.plots`.

  `adaptation_bands`   around `per_session.adaptation_curves`, over mood switches:
                       the delta method for the listen-rate ratio, Greenwood's
                       variance for the Kaplan-Meier first-listen probability.
  `kaplan_meier_band`  the product-limit estimate with its Greenwood band.
  `moving_average`     centred, NaN-aware smoothing of per-event curves.

The per-event curves' own bands are `per_session.per_event_bands`.
"""

from __future__ import annotations

import numpy as np

from jplaylist.session import per_session


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
  """Centred moving average over the last axis, NaN-aware, shorter at the ends.

  Position e averages the finite values at e - window // 2 .. e + (window - 1) // 2
  (NaN where there are none).
  """
  values = np.asarray(values, np.float64)
  if window < 1:
    raise ValueError(f"window={window}: expected >= 1")
  if window == 1:
    return values
  finite = np.isfinite(values)
  kernel = np.ones(window)
  before, after = window // 2, (window - 1) // 2

  def running(x):  # sums over the window, [..., E]
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(before, after)])
    return np.apply_along_axis(lambda row: np.convolve(row, kernel, "valid"), -1, padded)

  with np.errstate(invalid="ignore", divide="ignore"):
    return running(np.where(finite, values, 0.0)) / running(finite.astype(np.float64))


def adaptation_bands(results: dict, *, horizon: int = 10, window: int = 3,
                     recovery_fraction: float = 0.9, z: float = 1.96) -> dict:
  """Pointwise bands of `adaptation_curves`, over mood switches.

  ratio: served / oracle mean at each offset, a ratio of means; its standard
    error by the delta method, sqrt(var(served - ratio * oracle) / n) / mean(oracle)
    over the n switches whose segment reaches the offset (NaN for n < 2).
  listened_by: the Kaplan-Meier probability of a first listen by the offset,
    with Greenwood's variance S^2 sum d / (n (n - d)), S = 1 - listened_by.

  Returns:
    {"text" and "no_text": {"ratio": (lo [S, H], hi [S, H]),
                            "listened_by": (lo, hi) clipped to [0, 1]}}.
  """
  delays = per_session.adaptation_delays(results, window=window,
                                         recovery_fraction=recovery_fraction)
  horizon = min(horizon, delays["inside"].shape[1])
  out = {}
  for group, selected in (("text", delays["has_text"]), ("no_text", ~delays["has_text"])):
    inside = delays["inside"][selected, :horizon]
    served = delays["served"][:, selected, :horizon]
    oracle = delays["oracle"][:, selected, :horizon]
    count = inside.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
      ratio = served.sum(1) / oracle.sum(1)
      residual = np.where(inside, served - ratio[:, None, :] * oracle, 0.0)
      variance = (residual ** 2).sum(1) / (count - 1)
      half = z * np.sqrt(variance / count) / (oracle.sum(1) / count)
    half = np.where(count > 1, half, np.nan)
    entry = {"ratio": (ratio - half, ratio + half)}
    if "first_listen" in delays:
      entry["listened_by"] = kaplan_meier_band(delays["first_listen"][:, selected],
                                               delays["first_listen_censored"][:, selected],
                                               horizon, z=z)[1:]
    out[group] = entry
  return out


def kaplan_meier_band(delay: np.ndarray, censored: np.ndarray, horizon: int, *,
                      z: float = 1.96) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """P(event by offset t) with a Greenwood band, t = 0 .. horizon - 1.

  Args:
    delay: [S, M] offset of the first listen, or the segment length when censored.
    censored: [S, M] bool, no listen within the segment.
    horizon: number of offsets.
    z: band half-width in standard errors.

  Returns:
    (estimate, lo, hi), each [S, horizon]; NaN once nobody is at risk.
  """
  offsets = np.arange(horizon)
  delay, censored = np.asarray(delay)[..., None], np.asarray(censored, bool)[..., None]
  # At risk at t: no listen before t and the segment still running at t.
  at_risk = (delay >= offsets).sum(1) - (censored & (delay == offsets)).sum(1)
  events = (~censored & (delay == offsets)).sum(1)
  with np.errstate(invalid="ignore", divide="ignore"):
    hazard = np.where(at_risk > 0, events / at_risk, np.nan)
    survival = np.cumprod(1.0 - hazard, axis=1)
    terms = np.where(at_risk > events, events / (at_risk * (at_risk - events)), 0.0)
    terms = np.where(at_risk > 0, terms, np.nan)
    half = z * np.sqrt(survival ** 2 * np.cumsum(terms, axis=1))
  estimate = 1.0 - survival
  return estimate, np.clip(estimate - half, 0.0, 1.0), np.clip(estimate + half, 0.0, 1.0)
