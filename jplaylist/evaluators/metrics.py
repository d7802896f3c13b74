"""Ranking metrics of the evaluations, in numpy: AUC-ROC, average precision,
recall@k, over classes (tags) or queries.

"Class-balanced" AUC-ROC is the unweighted mean over classes of each class's
AUC-ROC, as music-tagging papers (and MuLan) report it: every tag counts the
same however rare it is. Classes without both a positive and a negative
example have no AUC and are left out of the mean (and counted).
"""

from __future__ import annotations

import numpy as np
import scipy.stats


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
  """AUC-ROC of one class: P(score of a positive > score of a negative), ties 1/2.

  Args:
    labels: [N] bool or {0, 1}.
    scores: [N] float.
  """
  labels = np.asarray(labels).astype(bool)
  positives, negatives = int(labels.sum()), int((~labels).sum())
  if not positives or not negatives:
    return float("nan")
  ranks = scipy.stats.rankdata(scores)  # average ranks: ties count half
  return float((ranks[labels].sum() - positives * (positives + 1) / 2)
               / (positives * negatives))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
  """Average precision (area under the step precision-recall curve) of one class."""
  labels = np.asarray(labels).astype(bool)
  if not labels.any():
    return float("nan")
  order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
  sorted_scores = np.asarray(scores, np.float64)[order]
  sorted_labels = labels[order]
  # Tied scores form one threshold: precision and recall are taken at the
  # end of each run of equal scores, as scikit-learn does.
  last_of_tie = np.r_[np.diff(sorted_scores) != 0, True]
  true_positives = np.cumsum(sorted_labels)[last_of_tie]
  predicted = (np.arange(len(labels)) + 1)[last_of_tie]
  precision = true_positives / predicted
  recall = true_positives / labels.sum()
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_class(metric, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """metric over the columns of [N, C] labels and scores -> [C] (nan if undefined)."""
  return np.array([metric(labels[:, c], scores[:, c]) for c in range(labels.shape[1])])


def macro(values: np.ndarray) -> float:
  """Unweighted mean over the classes where the metric is defined."""
  values = np.asarray(values, np.float64)
  return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")


def recall_at_k(relevant: np.ndarray, scores: np.ndarray, k: int) -> float:
  """Mean over queries of |relevant items in the top k| / |relevant items|.

  Args:
    relevant: [Q, N] bool, item n relevant to query q.
    scores: [Q, N] float.
  """
  relevant = np.asarray(relevant).astype(bool)
  top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  hits = np.take_along_axis(relevant, top, axis=1).sum(axis=1)
  counts = relevant.sum(axis=1)
  valid = counts > 0
  return float(np.mean(hits[valid] / counts[valid]))


def random_average_precision(num_relevant: np.ndarray, num_items: int) -> np.ndarray:
  """Expected average precision of a uniformly random ranking (exact).

  With R relevant among N items, E[AP] = (R-1)/(N-1) + H_N (N-R) / (N (N-1)),
  H_N the N-th harmonic number: H_N / N for one relevant item, 1 for all.

  Args:
    num_relevant: [Q] relevant items per query (each at least 1).
    num_items: N, the candidates every query ranks.
  """
  relevant = np.asarray(num_relevant, np.float64)
  if num_items == 1:
    return np.ones_like(relevant)
  harmonic = float(np.sum(1.0 / np.arange(1, num_items + 1)))
  return ((relevant - 1) / (num_items - 1)
          + harmonic * (num_items - relevant) / (num_items * (num_items - 1)))


def first_relevant_rank(relevant: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """1-based rank of each query's best-scored relevant item ([Q] int).

  An irrelevant item scored equal to it ranks ahead (ties are not won), so
  identical texts or embeddings never help. Queries without a relevant item
  get rank 0.

  Args:
    relevant: [Q, N] bool.
    scores: [Q, N] float.
  """
  relevant = np.asarray(relevant).astype(bool)
  best = np.where(relevant, scores, -np.inf).max(axis=1, keepdims=True)
  ahead = np.sum((~relevant) & (scores >= best), axis=1)
  return np.where(relevant.any(axis=1), ahead + 1, 0)
