"""Linear probes: independent logistic regressions on frozen audio embeddings.

For each tag of an attribute family, a binary L2-regularised logistic
regression is trained on one split's 128-d audio embeddings and scored on
another split (AUC-ROC); the figure is the class-balanced mean over tags that
have positives and negatives in both splits.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from jplaylist.evaluators import metrics
from jplaylist.evaluators import splits


def probe_auc(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
              test_y: np.ndarray, c: float = 1.0) -> np.ndarray:
  """Per-class test AUC-ROC of one-vs-rest probes ([T], nan where undefined)."""
  out = np.full(train_y.shape[1], np.nan)
  for j in range(train_y.shape[1]):
    if 0 < train_y[:, j].sum() < len(train_y) and 0 < test_y[:, j].sum() < len(test_y):
      probe = LogisticRegression(C=c, max_iter=2000).fit(train_x, train_y[:, j])
      out[j] = metrics.roc_auc(test_y[:, j], probe.decision_function(test_x))
  return out


class LinearProbe:
  """Class-balanced test AUC-ROC of linear probes per attribute family."""

  def __init__(self, dataset_path: str, train_split: str = "train",
               test_split: str = "test", families: Sequence[str] | None = None,
               c: float = 1.0):
    self.train = splits.load_split(dataset_path, train_split)
    self.test = splits.load_split(dataset_path, test_split)
    # None: every categorical attribute of the train split.
    self.families = tuple(families if families is not None
                          else splits.categorical_families(self.train.attributes))
    self.c = c

  def run(self, model) -> Iterator[tuple[str, float]]:
    train_x = model.embed_audio(self.train.waveforms, self.train.sample_rate)
    test_x = model.embed_audio(self.test.waveforms, self.test.sample_rate)
    for family in self.families:
      tags, train_y = splits.tag_labels(self.train.attributes, family)
      _, test_y = splits.tag_labels(self.test.attributes, family, tags)
      auc = probe_auc(train_x, train_y, test_x, test_y, self.c)
      if np.any(~np.isnan(auc)):
        yield f"linear_probe/{family}/auc_roc", metrics.macro(auc)
