"""Genre classification from a frozen embedding, by the user-anchored paper's recipe.

The metric-learning paper scores an audio embedding by how well an RBF SVM
tells genres from it: PCA to 128 dimensions, then an SVM with gamma = 1/128
and C = 1. Here, on the folds of `jplaylist.data.folds` (by composition), the
embedding is standardised, projected by a whitened PCA to min(128, d, n - 1)
dimensions (unit variance each, the scale that gamma = 1/128 presumes; a
normalised 128-d embedding would otherwise sit in the kernel's flat region),
and classified by `sklearn.svm.SVC(kernel="rbf", gamma=1/p, C=1)` with p the
PCA's dimensions (1/128 for every embedding of 128 or more dimensions).
Scores are precision@1 (accuracy) and @3 from the one-vs-rest decision values.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from jplaylist.evaluators import cross_validation as cv

PCA_DIMS = 128


def svm(num_features: int, num_train: int):
  """The recipe's pipeline for `num_features`-d inputs and `num_train` examples."""
  dims = min(PCA_DIMS, num_features, num_train - 1)
  return make_pipeline(StandardScaler(), PCA(dims, whiten=True, random_state=0),
                       SVC(kernel="rbf", gamma=1.0 / dims, C=1.0,
                           decision_function_shape="ovr"))


def svm_fold(features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
             num_classes: int) -> dict[str, float]:
  """p@1 and p@3 of the recipe's SVM trained on `train` rows, scored on `test`."""
  model = svm(features.shape[1], len(train)).fit(features[train], labels[train])
  scores = np.full((len(test), num_classes), -np.inf)
  decision = model.decision_function(features[test])
  if decision.ndim == 1:  # two classes seen in training
    decision = np.stack([-decision, decision], axis=1)
  scores[:, model.classes_] = decision
  return cv.fold_scores(scores, labels[test])


def table(pool: cv.Pool, embeddings: Mapping[str, np.ndarray],
          folds: Sequence[int] | None = None) -> dict[str, list[dict[str, float]]]:
  """Per-fold p@k of the SVM on each embedding ([N, d] rows in pool order)."""
  folds = list(range(pool.num_folds)) if folds is None else list(folds)
  out = {}
  for name, x in embeddings.items():
    if len(x) != len(pool):
      raise ValueError(f"{name}: {len(x)} rows for {len(pool)} pool recordings")
    out[name] = [svm_fold(np.asarray(x, np.float64), pool.labels, *pool.fold_positions(f),
                          len(pool.classes)) for f in folds]
  return out
