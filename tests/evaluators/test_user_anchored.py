"""Figures of the user-anchored report (issue 16, items 4 and 5).

The per-user AUC equals scikit-learn's averaged over users, ties included,
and its standard error scipy's;
precision@k and the fan recall equal brute-force counts; the random
ranking's expectations equal an enumeration of every ranking.
"""

import itertools
import math

import numpy as np
import scipy.stats
from sklearn.metrics import roc_auc_score

from jplaylist.evaluators import user_anchored as evaluator


def test_auc_equals_sklearn_with_ties_and_is_nan_for_one_class():
  rng = np.random.default_rng(0)
  for _ in range(20):
    scores = rng.integers(0, 5, 30).astype(float)  # many ties
    labels = rng.random(30) < 0.4
    np.testing.assert_allclose(evaluator.binary_auc(scores, labels),
                               roc_auc_score(labels, scores), rtol=1e-12)
  assert math.isnan(evaluator.binary_auc(np.arange(3.0), np.ones(3, bool)))


def test_per_user_metrics_average_sklearn_and_brute_force_precision():
  rng = np.random.default_rng(1)
  user = rng.integers(0, 6, 120)
  scores = rng.standard_normal(120)
  liked = rng.random(120) < 0.5
  liked[user == 5] = True                      # one class only: no AUC for user 5
  user[-2:] = 9                                # two interactions: fewer than k
  got = evaluator.per_user_metrics(scores, liked, user, k=3)
  aucs, precision, base = [], [], []
  for u in np.unique(user):
    s, y = scores[user == u], liked[user == u]
    if y.all() or not y.any():
      pass
    else:
      aucs.append(roc_auc_score(y, s))
    if len(s) >= 3:
      precision.append(y[np.argsort(-s)[:3]].mean())
      base.append(y.mean())
  np.testing.assert_allclose(got["auc"], np.mean(aucs), rtol=1e-12)
  np.testing.assert_allclose(got["auc_se"], scipy.stats.sem(aucs), rtol=1e-12)
  np.testing.assert_allclose(got["precision"], np.mean(precision), rtol=1e-12)
  np.testing.assert_allclose(got["precision_random"], np.mean(base), rtol=1e-12)
  assert got["auc_users"] == len(aucs) and got["precision_users"] == len(precision)


def test_fan_recall_counts_fans_in_the_top_k_and_its_random_expectation_is_exact():
  rng = np.random.default_rng(2)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  users, tracks = unit(rng.standard_normal((6, 4))), unit(rng.standard_normal((3, 4)))
  fans = [np.array([0, 3]), np.array([], int), np.array([5])]
  got = evaluator.fan_recall(users, tracks, fans, ks=(2,))
  assert got["tracks"] == 2 and got["candidates"] == 6
  recall, hit = [], []
  for t in (0, 2):
    top = set(np.argsort(-(users @ tracks[t]))[:2])
    found = [f in top for f in fans[t]]
    recall.append(np.mean(found))
    hit.append(any(found))
  np.testing.assert_allclose(got["recall@2"], np.mean(recall))
  np.testing.assert_allclose(got["hit@2"], np.mean(hit))
  # Every ranking's top 2 equally likely: enumerate them.
  tops = list(itertools.combinations(range(6), 2))
  random_recall = np.mean([np.mean([np.mean([f in top for f in fans[t]]) for top in tops])
                           for t in (0, 2)])
  random_hit = np.mean([np.mean([any(f in top for f in fans[t]) for top in tops])
                        for t in (0, 2)])
  np.testing.assert_allclose(got["random_recall@2"], random_recall)
  np.testing.assert_allclose(got["random_hit@2"], random_hit)


def test_evenly_spaced_windows_start_at_zero_and_end_at_the_last_full_window():
  audio = np.arange(100, dtype=np.int16)
  windows = evaluator.evenly_spaced_windows(audio, 40, 3)
  np.testing.assert_array_equal(windows[:, 0], [0, 30, 60])
  np.testing.assert_array_equal(windows[2], audio[60:])
  short = evaluator.evenly_spaced_windows(audio[:10], 40, 2)
  np.testing.assert_array_equal(short[0, :10], audio[:10])
  assert not short[:, 10:].any()
