"""Metrics of the adaptive-playlisting study, per event and per session.

The study (`jplaylist.session.study`) simulates listening sessions in which a
strategy re-sorts the remaining candidates after every event, the adaptive
playlisting of patent WO2024043931A1. Two layers:

In-loop, JAX (pure, static shapes, vmappable over sessions, jit-able), called
for each session at every event:
  `ranking_metrics`  nDCG@k and precision@k of the re-sorted remainder, graded
                     by the listener's true listen probability.
  `session_auc`      AUC-ROC of a classifier's scores (ties count 1/2).

Host-side, numpy, on the recorded per-event arrays of S strategies x B
sessions x E events (the `results` dict, see `summarize`):
  `per_event_curves`    metric curves over events (mean over sessions).
  `adaptation_delays`   per mood switch: events to the first listen and to
                        recover `recovery_fraction` of the oracle's listen rate.
  `adaptation_curves`   listen rate and first-listen probability after switches.
  `per_session_metrics` one value per strategy and session.
  `bootstrap_ci`, `paired_bootstrap`  percentile bootstrap over sessions.
  `summarize`           means with CIs and paired differences vs a baseline.

Sessions are the unit of resampling: events of one session are dependent,
sessions are not. Paired differences resample the same sessions for both
strategies, which all see the same sampled listeners and mood switches.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# ------------------------------------------------------------------ in-loop (JAX)


def ranking_metrics(scores: jax.Array, true_prob: jax.Array, available: jax.Array,
                    k: int = 10, *, relevance_threshold: float = 0.5,
                    average_ties: bool = True) -> tuple[jax.Array, jax.Array]:
  """nDCG@k and precision@k of the candidates ranked by `scores`.

  The gain of an item is its true listen probability (graded nDCG); the ideal
  DCG ranks the available items by that probability. An item is relevant for
  precision when its true probability is >= `relevance_threshold`.

  Tied scores: with `average_ties` every ordering of a tie counts equally (the
  expected metric under random tie-breaking, as sklearn's `ndcg_score` does
  by default); this matters at cold start, where many scores can be equal.
  Every tie group above the k-th score lies inside the top k, so only the
  group of the k-th score needs one more pass over the N items. Without it
  ties go to the lower index, as `lax.top_k` breaks them.

  Args:
    scores: [N] float, the strategy's scores; finite on available items.
    true_prob: [N] float in [0, 1], the listener's true listen probabilities.
    available: [N] bool, items still in the remainder (not yet played).
    k: static cut-off.
    relevance_threshold: scalar, may be traced.
    average_ties: static, see above.

  Returns:
    (ndcg, precision): float32 scalars. Precision divides by min(k, number
    available), so a remainder shorter than k can still score 1. Both are NaN
    when nothing is available; nDCG is 0 when every available gain is 0.
  """
  depth = min(int(k), scores.shape[-1])
  available = available.astype(bool)
  true_prob = true_prob.astype(jnp.float32)
  discounts = 1.0 / jnp.log2(jnp.arange(depth, dtype=jnp.float32) + 2.0)

  top_scores, top_index = lax.top_k(jnp.where(available, scores, -jnp.inf), depth)
  ideal, _ = lax.top_k(jnp.where(available, true_prob, -jnp.inf), depth)
  # Positions holding an available item: the first min(depth, #available),
  # read off the ideal ranking (true probabilities are finite), which saves
  # a pass over the N items.
  filled = ideal > -jnp.inf
  num_filled = jnp.sum(filled)
  gains = true_prob[top_index]
  hits = (gains >= relevance_threshold).astype(jnp.float32)
  if average_ties:
    # Without the barrier XLA fuses the pass below with top_k's input and
    # lowers top_k to a full sort of the N scores (~50x slower on CPU).
    top_scores, scores, true_prob, available = lax.optimization_barrier(
        (top_scores, scores, true_prob, available))
    # Position r holds, in expectation, the mean gain and relevance of the tie
    # group whose score is the r-th largest.
    same = (top_scores[:, None] == top_scores[None, :]) & filled[None, :]
    size = jnp.sum(same, axis=1)
    group_gain = jnp.sum(jnp.where(same, gains[None, :], 0.0), axis=1)
    group_hits = jnp.sum(jnp.where(same, hits[None, :], 0.0), axis=1)
    boundary = available & (scores == top_scores[-1])
    on_boundary = top_scores == top_scores[-1]
    size = jnp.where(on_boundary, jnp.sum(boundary), size)
    group_gain = jnp.where(on_boundary, jnp.sum(jnp.where(boundary, true_prob, 0.0)), group_gain)
    boundary_hits = jnp.sum(boundary & (true_prob >= relevance_threshold))
    group_hits = jnp.where(on_boundary, boundary_hits, group_hits)
    gains = group_gain / jnp.maximum(size, 1)
    hits = group_hits / jnp.maximum(size, 1)
  gains, hits = jnp.where(filled, gains, 0.0), jnp.where(filled, hits, 0.0)

  ideal_dcg = jnp.sum(jnp.where(filled, ideal, 0.0) * discounts)
  dcg = jnp.sum(gains * discounts)
  ndcg = jnp.where(ideal_dcg > 0, dcg / jnp.where(ideal_dcg > 0, ideal_dcg, 1.0), 0.0)
  precision = jnp.sum(hits) / jnp.maximum(num_filled, 1)
  empty = num_filled == 0
  return jnp.where(empty, jnp.nan, ndcg), jnp.where(empty, jnp.nan, precision)


def session_auc(scores: jax.Array, relevant: jax.Array, valid: jax.Array) -> jax.Array:
  """AUC-ROC of `scores` for `relevant` over the `valid` items, O(N log N).

  One sort of the N scores: cheap over a session's served tracks or history,
  but over a 10,000-track library it costs more than scoring it (XLA's CPU
  sort), so compute it on a subset of events there.

  P(score of a relevant item > score of an irrelevant one), ties counting 1/2:
  the Mann-Whitney statistic with average ranks, equal to
  sklearn.metrics.roc_auc_score.

  Args:
    scores: [N] float.
    relevant: [N] bool (e.g. the realised listen of a served track, or
      true_prob >= 0.5 over the library).
    valid: [N] bool, items that count.

  Returns:
    float32 scalar; NaN when the valid items hold no relevant or no irrelevant
    one (the AUC is undefined; host-side means skip NaN, so such a session is
    left out rather than counted as chance).
  """
  scores = scores.astype(jnp.float32)
  positive = valid.astype(bool) & relevant.astype(bool)
  negative = valid.astype(bool) & ~relevant.astype(bool)
  num_positive, num_negative = jnp.sum(positive), jnp.sum(negative)
  # Irrelevant items' scores sorted, padding (+inf) after them; clipping the
  # counts at num_negative keeps the padding out even for +inf scores.
  negatives = jnp.sort(jnp.where(negative, scores, jnp.inf))
  below = jnp.minimum(jnp.searchsorted(negatives, scores, side="left"), num_negative)
  not_above = jnp.minimum(jnp.searchsorted(negatives, scores, side="right"), num_negative)
  # Per positive: the fraction of negatives it beats; a float mean, so no
  # P x N count can overflow.
  beaten = 0.5 * (below + not_above).astype(jnp.float32) / jnp.maximum(num_negative, 1)
  auc = jnp.sum(jnp.where(positive, beaten, 0.0)) / jnp.maximum(num_positive, 1)
  return jnp.where((num_positive > 0) & (num_negative > 0), auc, jnp.nan)


# ------------------------------------------------------------------ bootstrap


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


def _bootstrap_columns(values: np.ndarray, weights: np.ndarray, num_resamples: int,
                       seed: int, confidence: float) -> tuple[np.ndarray, ...]:
  """Weighted means of the columns of [B, M] values and their percentile CIs.

  Non-finite values and zero weights leave a session out of that column. All
  columns share the resamples (so a given seed gives the same CI whichever
  other columns come along).
  """
  values = np.asarray(values, np.float64)
  weights = np.broadcast_to(np.asarray(weights, np.float64), values.shape)
  keep = np.isfinite(values) & (weights > 0)
  weights = np.where(keep, weights, 0.0)
  weighted = np.where(keep, values, 0.0) * weights
  with np.errstate(invalid="ignore", divide="ignore"):
    point = weighted.sum(0) / weights.sum(0)
    resampled = np.concatenate([(counts @ weighted) / (counts @ weights) for counts in
                                _resample_counts(values.shape[0], num_resamples, seed)])
  alpha = 100.0 * (1.0 - confidence) / 2.0
  lo, hi = np.full(point.shape, np.nan), np.full(point.shape, np.nan)
  defined = np.isfinite(resampled).any(0)
  if defined.any():
    lo[defined], hi[defined] = np.nanpercentile(resampled[:, defined], [alpha, 100.0 - alpha],
                                                axis=0)
  return point, lo, hi, keep.sum(0)


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
  point, lo, hi, _ = _bootstrap_columns(a, w, num_resamples, seed, confidence)
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


# ------------------------------------------------------------------ host-side inputs


@dataclasses.dataclass
class _Inputs:
  """The results dict broadcast to [S, B, E] (strategy x session x event)."""
  served: np.ndarray
  oracle: np.ndarray
  skipped: np.ndarray
  mask: np.ndarray             # [S, B, E] bool, event happened
  raw: dict

  @property
  def shape(self):
    return self.served.shape


def _inputs(results: dict) -> _Inputs:
  for key in ("served_prob", "oracle_prob", "skipped"):
    if key not in results:
      raise KeyError(f"results lacks {key!r}: needs served_prob [S,B,E], oracle_prob [B,E] "
                     f"or [S,B,E], skipped [S,B,E]")
  served = np.asarray(results["served_prob"], np.float64)
  if served.ndim != 3:
    raise ValueError(f"results['served_prob'] must be [S, B, E], got shape {served.shape}")

  def full(key, dtype):
    value = np.asarray(results[key], dtype)
    try:
      return np.broadcast_to(value, served.shape)
    except ValueError:
      raise ValueError(f"results[{key!r}] has shape {value.shape}, which does not broadcast "
                       f"to [S, B, E] = {served.shape}") from None

  mask = full("mask", bool) if "mask" in results else np.ones(served.shape, bool)
  return _Inputs(served, full("oracle_prob", np.float64), full("skipped", bool), mask,
                 {key: results[key] for key in results})


def _masked_mean(x: np.ndarray, mask: np.ndarray, axis: int) -> np.ndarray:
  """Mean of x over axis where mask and x is finite (NaN where none)."""
  keep = mask & np.isfinite(x)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(keep, x, 0.0).sum(axis) / keep.sum(axis)


def _event_series(inputs: _Inputs, k: int) -> dict[str, tuple[np.ndarray, str, bool]]:
  """name -> ([S, B, E] per-event values, description, higher_is_better)."""
  series = {
      "skip_rate": (inputs.skipped, "fraction of served tracks skipped before the end", False)}
  if "early_skipped" in inputs.raw:
    series["early_skip_rate"] = (np.broadcast_to(np.asarray(inputs.raw["early_skipped"], bool),
                                                 inputs.shape),
                                 "fraction of served tracks skipped early", False)
  series["listen_rate"] = (inputs.served, "expected listen rate: mean true listen "
                           "probability of the served tracks", True)
  series["oracle_listen_rate"] = (inputs.oracle, "the oracle's listen rate (best available "
                                  "true probability)", True)
  if "listened" in inputs.raw:
    series["realised_listen_rate"] = (np.broadcast_to(np.asarray(inputs.raw["listened"], bool),
                                                      inputs.shape),
                                      "fraction of served tracks listened to", True)
  for key, name, text in (("ndcg", f"ndcg@{k}", f"nDCG@{k} of the re-sorted remainder"),
                          ("precision", f"precision@{k}",
                           f"precision@{k} of the re-sorted remainder")):
    if key in inputs.raw:
      series[name] = (np.broadcast_to(np.asarray(inputs.raw[key], np.float64), inputs.shape),
                      text, True)
  return series


def per_event_curves(results: dict, *, k: int = 10) -> dict[str, np.ndarray]:
  """Metric curves over events: name -> [S, E], mean over the sessions at each event.

  Holds skip_rate, early_skip_rate (if given), listen_rate (served p),
  oracle_listen_rate, realised_listen_rate (if `listened` given),
  cumulative_reward (sum of served p so far), cumulative_regret (sum of
  oracle - served so far), ndcg@k / precision@k (if given). NaN where no
  session reaches an event.
  """
  inputs = _inputs(results)
  curves = {name: _masked_mean(values.astype(np.float64), inputs.mask, axis=1)
            for name, (values, _, _) in _event_series(inputs, k).items()}
  served = np.where(inputs.mask, inputs.served, 0.0)
  oracle = np.where(inputs.mask, inputs.oracle, 0.0)
  curves["cumulative_reward"] = _masked_mean(np.cumsum(served, -1), inputs.mask, axis=1)
  curves["cumulative_regret"] = _masked_mean(np.cumsum(oracle - served, -1), inputs.mask, axis=1)
  return curves


# ------------------------------------------------------------------ adaptation


def adaptation_delays(results: dict, *, window: int = 3,
                      recovery_fraction: float = 0.9) -> dict[str, np.ndarray]:
  """How fast each strategy adapts after each mood switch.

  A switch at event e (switch[b, e]) starts a segment that runs to the next
  switch or the session's end (the first masked event), exclusive; the track
  served at e is the first under the new mood. Within the segment, at offset
  j = 0, 1, ... (event e + j):

    first_listen  j of the first realised listen (0: the first track after
                  the switch was listened to).
    recovery      first j where the trailing mean of the served true
                  probability over the last `window` events of the segment
                  (fewer at its start; earlier moods never count) reaches
                  `recovery_fraction` x the oracle's mean over the same events.

  When it never happens in the segment the delay is censored: it is set to the
  segment length (a lower bound, so means of delays are restricted means) and
  flagged.

  Args:
    results: the dict of `summarize`; needs served_prob, oracle_prob, switch,
      and listened for first_listen (left out without it).
    window: trailing window of the recovery, in events.
    recovery_fraction: fraction of the oracle's listen rate to recover.

  Returns:
    dict of per-switch arrays, M switches: session [M], event [M],
    has_text [M] bool, segment_length [M]; first_listen, first_listen_censored,
    recovery, recovery_censored: [S, M]; served, oracle: [S, M, E] values at
    offsets (0 past the segment end), inside [M, E] bool.
  """
  inputs = _inputs(results)
  _, num_sessions, num_events = inputs.shape
  if "switch" not in results:
    raise KeyError("results lacks 'switch' [B, E] bool: adaptation needs the mood switches")
  mask = inputs.mask[0]  # session lengths come from the shared session plan
  switch = np.broadcast_to(np.asarray(results["switch"], bool), mask.shape) & mask
  text = np.broadcast_to(np.asarray(results.get("switch_text", np.zeros_like(switch)), bool),
                         mask.shape)
  breaks = switch | ~mask
  next_break = np.empty(mask.shape, np.int64)
  upcoming = np.full(num_sessions, num_events)
  for event in range(num_events - 1, -1, -1):
    next_break[:, event] = upcoming
    upcoming = np.where(breaks[:, event], event, upcoming)

  session, event = np.nonzero(switch)
  length = next_break[session, event] - event
  offsets = np.arange(num_events)
  inside = offsets[None, :] < length[:, None]
  position = np.minimum(event[:, None] + offsets[None, :], num_events - 1)

  def gather(x):  # [S, B, E] -> [S, M, E], zero past the segment
    return np.where(inside, x[:, session[:, None], position], 0)

  def first(hit):  # [S, M, E] bool -> (offset of first hit or length, censored)
    found = hit.any(-1)
    return np.where(found, hit.argmax(-1), length[None, :]), ~found

  served, oracle = gather(inputs.served), gather(inputs.oracle)
  trailing = []
  for x in (served, oracle):
    total = np.cumsum(x, -1)
    shifted = np.concatenate([np.zeros(x.shape[:-1] + (window,)), total], -1)[..., :num_events]
    trailing.append((total - shifted) / np.minimum(offsets + 1, window))
  recovered = inside & (trailing[0] >= recovery_fraction * trailing[1])
  out = dict(session=session, event=event, has_text=text[session, event],
             segment_length=length, inside=inside, served=served, oracle=oracle)
  out["recovery"], out["recovery_censored"] = first(recovered)
  if "listened" in results:
    listened = np.broadcast_to(np.asarray(results["listened"], bool), inputs.shape)
    out["first_listen"], out["first_listen_censored"] = first(gather(listened).astype(bool))
  return out


def adaptation_curves(results: dict, *, horizon: int = 10, window: int = 3,
                      recovery_fraction: float = 0.9) -> dict:
  """Mean behaviour at each offset after a switch, split by text request.

  Returns:
    {"offsets": [H], "recovery_fraction": float, "text" and "no_text": {
      "served": [S, H] mean served true probability over the switches whose
        segment reaches that offset, "oracle": [S, H] the same for the oracle,
      "ratio": [S, H] served / oracle, "listened_by": [S, H] Kaplan-Meier
        probability of a first listen by that offset (censoring at the segment
        end; NaN once no switch is at risk, or without `listened`),
      "num_switches": int}}.
  """
  delays = adaptation_delays(results, window=window, recovery_fraction=recovery_fraction)
  horizon = min(horizon, delays["inside"].shape[1])
  out = {"offsets": np.arange(horizon), "recovery_fraction": recovery_fraction}
  for group, selected in (("text", delays["has_text"]), ("no_text", ~delays["has_text"])):
    inside = delays["inside"][selected, :horizon]
    count = inside.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
      served = delays["served"][:, selected, :horizon].sum(1) / count
      oracle = delays["oracle"][:, selected, :horizon].sum(1) / count
      ratio = served / oracle
    listened_by = np.full(served.shape, np.nan)
    if "first_listen" in delays:
      delay = delays["first_listen"][:, selected, None]
      censored = delays["first_listen_censored"][:, selected, None]
      at_risk = (delay >= np.arange(horizon)).sum(1) - (censored & (delay == np.arange(
          horizon))).sum(1)
      events = (~censored & (delay == np.arange(horizon))).sum(1)
      with np.errstate(invalid="ignore", divide="ignore"):
        hazard = np.where(at_risk > 0, events / at_risk, np.nan)
      listened_by = 1.0 - np.cumprod(1.0 - hazard, axis=1)
    out[group] = dict(served=served, oracle=oracle, ratio=ratio, listened_by=listened_by,
                      num_switches=int(selected.sum()))
  return out


# ------------------------------------------------------------------ per session


@dataclasses.dataclass
class SessionMetric:
  """One metric's per-session values: mean over sessions weighted by `weights`."""
  values: np.ndarray           # [S, B], NaN where undefined for a session
  weights: np.ndarray          # [B]
  description: str
  higher_is_better: bool | None


def per_session_metrics(results: dict, *, k: int = 10, window: int = 3,
                        recovery_fraction: float = 0.9) -> dict[str, SessionMetric]:
  """Per strategy and session: name -> SessionMetric with values [S, B].

  Rates are means over the session's events; cumulative_reward and regret are
  sums. auc (if given as [S, B] or [S, B, E]) is averaged over events.
  Adaptation metrics average over the session's switches of each kind and
  are weighted by their number, so the overall mean is over switches.
  """
  inputs = _inputs(results)
  num_strategies, num_sessions, _ = inputs.shape
  ones = np.ones(num_sessions)
  out = {name: SessionMetric(_masked_mean(values.astype(np.float64), inputs.mask, -1), ones,
                             text, better)
         for name, (values, text, better) in _event_series(inputs, k).items()}
  served = np.where(inputs.mask, inputs.served, 0.0)
  out["cumulative_reward"] = SessionMetric(served.sum(-1), ones,
                                           "sum of the served true probabilities", True)
  out["regret"] = SessionMetric(np.where(inputs.mask, inputs.oracle, 0.0).sum(-1) - served.sum(-1),
                                ones, "sum of oracle - served true probability", False)
  if "auc" in results:
    auc = np.asarray(results["auc"], np.float64)
    if auc.ndim == 3:
      auc = _masked_mean(np.broadcast_to(auc, inputs.shape), inputs.mask, -1)
    out["auc"] = SessionMetric(np.broadcast_to(auc, (num_strategies, num_sessions)), ones,
                               "AUC-ROC of the classifier in the session", True)
  if "switch" not in results:
    return out
  delays = adaptation_delays(results, window=window, recovery_fraction=recovery_fraction)
  measures = [("recovery", f"events to recover {recovery_fraction:.0%} of the oracle's listen "
               f"rate (trailing {window})")]
  if "first_listen" in delays:
    measures.insert(0, ("first_listen", "events after a switch before the first listen"))
  for group, selected in (("text", delays["has_text"]), ("no_text", ~delays["has_text"])):
    session = delays["session"][selected]
    count = np.bincount(session, minlength=num_sessions).astype(np.float64)
    label = "switches with a text request" if group == "text" else "switches without text"
    for name, text in measures:
      for suffix, key, about, better in (("", name, text, False),
                                         ("_censored", name + "_censored",
                                          "fraction censored: " + text, None)):
        per_switch = delays[key][:, selected].astype(np.float64)
        sums = np.stack([np.bincount(session, per_switch[s], minlength=num_sessions)
                         for s in range(num_strategies)])
        with np.errstate(invalid="ignore", divide="ignore"):
          out[f"{name}{suffix}/{group}"] = SessionMetric(sums / count, count,
                                                         f"{about}, {label}", better)
  return out


# ------------------------------------------------------------------ summary


def _clean(x: float) -> float | None:
  """A JSON-safe float: NaN and inf become None."""
  return float(x) if math.isfinite(x) else None


def summarize(results: dict, strategy_names: Sequence[str], baseline: str | None = None, *,
              num_resamples: int = 2000, seed: int = 0, confidence: float = 0.95, k: int = 10,
              window: int = 3, recovery_fraction: float = 0.9) -> dict:
  """Per strategy, each metric's mean with its CI and the paired difference vs baseline.

  Args:
    results: dict of numpy arrays recorded by the study, S strategies x B
      sessions x E events:
        served_prob [S,B,E] float   true listen probability of the served track
        oracle_prob [B,E] or [S,B,E] best true probability among the available
        skipped [S,B,E] bool         skipped before the end
        early_skipped [S,B,E] bool   optional
        listened [S,B,E] bool        optional, realised listens (first-listen)
        ndcg, precision [S,B,E]      optional, from `ranking_metrics` (NaN ok)
        auc [S,B] or [S,B,E]         optional, from `session_auc` (NaN ok)
        switch, switch_text [B,E]    optional, mood switch / with a text request
        mask [B,E] bool              optional, event happened (padded sessions)
    strategy_names: S names.
    baseline: name of the strategy the differences are taken against (None:
      no differences).
    num_resamples, seed, confidence: of the bootstrap over sessions; every
      metric and strategy uses the same resamples.
    k, window, recovery_fraction: see `per_session_metrics`.

  Returns:
    JSON-serialisable dict (NaN -> None): {"strategies", "baseline",
    "num_sessions", "num_events", "confidence", "num_resamples", "seed",
    "settings", "metrics": {name: {"description", "higher_is_better",
    "strategies": {strategy: {"mean", "lo", "hi", "num_sessions", and with
    a baseline "diff", "diff_lo", "diff_hi"}}}}}. Adaptation metrics average
    over switches (sessions weighted by their switch count).
  """
  strategy_names = list(strategy_names)
  metrics = per_session_metrics(results, k=k, window=window, recovery_fraction=recovery_fraction)
  num_strategies, num_sessions = next(iter(metrics.values())).values.shape
  if len(strategy_names) != num_strategies:
    raise ValueError(f"{len(strategy_names)} strategy_names for {num_strategies} strategies in "
                     f"results")
  if baseline is not None and baseline not in strategy_names:
    raise ValueError(f"baseline {baseline!r} is not one of the strategies {strategy_names}")
  base = None if baseline is None else strategy_names.index(baseline)

  columns, weights = [], []
  for metric in metrics.values():
    for s in range(num_strategies):
      columns.append(metric.values[s])
      weights.append(metric.weights)
      if base is not None:
        columns.append(metric.values[s] - metric.values[base])
        weights.append(metric.weights)
  point, lo, hi, count = _bootstrap_columns(np.stack(columns, 1), np.stack(weights, 1),
                                            num_resamples, seed, confidence)
  column = iter(range(len(columns)))
  table = {}
  for name, metric in metrics.items():
    per_strategy = {}
    for s in range(num_strategies):
      c = next(column)
      entry = dict(mean=_clean(point[c]), lo=_clean(lo[c]), hi=_clean(hi[c]),
                   num_sessions=int(count[c]))
      if base is not None:
        c = next(column)
        entry.update(diff=_clean(point[c]), diff_lo=_clean(lo[c]), diff_hi=_clean(hi[c]))
      per_strategy[strategy_names[s]] = entry
    table[name] = dict(description=metric.description, higher_is_better=metric.higher_is_better,
                       strategies=per_strategy)
  return dict(strategies=strategy_names, baseline=baseline, num_sessions=int(num_sessions),
              num_events=int(np.shape(results["served_prob"])[-1]), confidence=confidence,
              num_resamples=int(num_resamples), seed=int(seed),
              settings=dict(k=k, window=window, recovery_fraction=recovery_fraction),
              metrics=table)
