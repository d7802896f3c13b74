"""Metrics of the adaptive-playlisting study, per event and per session.

The study (`jplaylist.session.study`) simulates listening sessions in which a
strategy re-sorts the remaining candidates after every event, the adaptive
playlisting of patent WO2024043931A1.

This module holds the in-loop metrics, JAX (pure, static shapes, vmappable
over sessions, jit-able), called for each session at every event:
  `ranking_metrics`  nDCG@k and precision@k of the re-sorted remainder, graded
                     by the listener's true listen probability.
  `session_auc`      AUC-ROC of a classifier's scores (ties count 1/2).

and re-exports the host-side layers, numpy on the recorded arrays of S
strategies x B sessions x E events, from the modules that hold them:
  `per_session`  per_event_curves, per_event_bands, adaptation_delays,
                 adaptation_curves, per_session_metrics, SessionMetric.
  `bootstrap`    bootstrap_ci, paired_bootstrap, gain_share: the percentile
                 bootstrap over sessions (the unit of resampling).
  `summary`      summarize, best_baseline, gain_shares, paired_rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

# Host-side layers, re-exported so `metrics.summarize` etc. keep working.
from jplaylist.session.bootstrap import bootstrap_ci  # pylint: disable=unused-import
from jplaylist.session.bootstrap import gain_share  # pylint: disable=unused-import
from jplaylist.session.bootstrap import paired_bootstrap  # pylint: disable=unused-import
from jplaylist.session.per_session import adaptation_curves  # pylint: disable=unused-import
from jplaylist.session.per_session import adaptation_delays  # pylint: disable=unused-import
from jplaylist.session.per_session import per_event_bands  # pylint: disable=unused-import
from jplaylist.session.per_session import per_event_curves  # pylint: disable=unused-import
from jplaylist.session.per_session import per_session_metrics  # pylint: disable=unused-import
from jplaylist.session.per_session import SessionMetric  # pylint: disable=unused-import
from jplaylist.session.summary import best_baseline  # pylint: disable=unused-import
from jplaylist.session.summary import gain_shares  # pylint: disable=unused-import
from jplaylist.session.summary import paired_rows  # pylint: disable=unused-import
from jplaylist.session.summary import summarize  # pylint: disable=unused-import

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
