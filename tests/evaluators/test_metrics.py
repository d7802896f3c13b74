"""The ranking metrics against scikit-learn on random inputs."""

import numpy as np
import pytest
from sklearn import metrics as sk

from jplaylist.evaluators import metrics


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_average_precision_match_scikit_learn(seed):
  rng = np.random.default_rng(seed)
  n, c = 200, 12
  labels = rng.random((n, c)) < rng.uniform(0.05, 0.5, c)
  scores = labels * rng.normal(0.5, 1, (n, c)) + rng.normal(0, 1, (n, c))
  scores[:, 0] = np.round(scores[:, 0])  # many ties
  labels[:, 1] = False                   # a class without positives
  ours_auc = metrics.per_class(metrics.roc_auc, labels, scores)
  ours_ap = metrics.per_class(metrics.average_precision, labels, scores)
  for k in range(c):
    if labels[:, k].any() and (~labels[:, k]).any():
      assert ours_auc[k] == pytest.approx(sk.roc_auc_score(labels[:, k], scores[:, k]), abs=1e-12)
      assert ours_ap[k] == pytest.approx(
          sk.average_precision_score(labels[:, k], scores[:, k]), abs=1e-12)
    else:
      assert np.isnan(ours_auc[k])
  keep = labels.any(axis=0) & (~labels).any(axis=0)
  assert metrics.macro(ours_auc) == pytest.approx(
      sk.roc_auc_score(labels[:, keep], scores[:, keep], average="macro"), abs=1e-12)
  assert metrics.macro(ours_ap) == pytest.approx(
      sk.average_precision_score(labels[:, keep], scores[:, keep], average="macro"), abs=1e-12)


def test_recall_at_k_matches_a_direct_count():
  rng = np.random.default_rng(0)
  relevant = rng.random((30, 50)) < 0.1
  relevant[0] = False  # a query with nothing relevant is left out
  scores = rng.normal(size=(30, 50))
  for k in (1, 5, 10):
    expected = []
    for q in range(1, 30):
      if relevant[q].sum():
        top = set(np.argsort(-scores[q])[:k])
        expected.append(sum(relevant[q, i] for i in top) / relevant[q].sum())
    assert metrics.recall_at_k(relevant, scores, k) == pytest.approx(np.mean(expected))
  # top_k_accuracy-style check with one relevant item per query.
  single = np.eye(50, dtype=bool)[rng.integers(0, 50, 30)]
  assert metrics.recall_at_k(single, scores, 5) == pytest.approx(
      sk.top_k_accuracy_score(single.argmax(1), scores, k=5, labels=np.arange(50)))
