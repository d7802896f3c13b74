"""Cross-validated genre classification: precision@k per fold, and its rivals.

The hyper-image paper reports its CNN by 10-fold cross-validation with
precision@1 and @3: a recording counts at k when its true class is among the
k classes the model scores highest. Here the folds group recordings by
composition (`jplaylist.data.folds`), and four classifiers are scored on the
same folds:

  a classifier run per fold   (launch/cross_validate.py: the hyper-image CNN or
                              the M-ResNet on log-mel), a recording scored by
                              the mean log-softmax of its consecutive windows;
  a linear probe              multinomial logistic regression on a library
                              index's embeddings (the contrastive model's 128-d);
  summary statistics          logistic regression on the per-row mean and
                              standard deviation over time of the recording's
                              hyper-image (the same features, no CNN);
  class prior                 the training folds' class frequencies (chance).

Every scikit-learn model uses fixed settings (standardised inputs, C = 1),
chosen before any fold was scored; nothing is tuned on the test folds.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from jplaylist import inference
from jplaylist import library_index
from jplaylist.audio import hyper_image as hyper_image_lib
from jplaylist.data import audio_io
from jplaylist.data import builder
from jplaylist.data import folds as folds_lib
from jplaylist.trainers import classifier

KS = (1, 3)


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
  """Share of rows whose true class is among the k highest scores.

  A tie at the k-th score counts against the row only for the classes that
  come after it in index order (a stable sort), so equal scores never help.

  Args:
    scores: [N, C] class scores.
    labels: [N] int true classes.
  """
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels)
  if scores.ndim != 2 or len(scores) != len(labels) or not len(labels):
    raise ValueError(f"scores {scores.shape} and labels {labels.shape} do not match")
  true = scores[np.arange(len(labels)), labels]
  # Classes ranked above the true one: higher scores, or equal with a lower index.
  above = (scores > true[:, None]).sum(1) + (
      (scores == true[:, None]) & (np.arange(scores.shape[1]) < labels[:, None])).sum(1)
  return float(np.mean(above < k))


def fold_scores(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  return {f"p@{k}": precision_at_k(scores, labels, k) for k in KS}


# ----------------------------------------------------------- the pool ----
class Pool:
  """The recordings of the pooled splits, with their fold and class.

  Attributes:
    ids: [N] record ids, in pool order (the splits joined in order).
    labels: [N] class index (-1: the record's label is not one of the classes).
    folds: [N] fold of each record (`folds.assign` over the group attribute).
    attributes: [N] attribute objects.
  """

  def __init__(self, dataset_path: str, pool: Sequence[str], num_folds: int,
               field: str, classes: Sequence[str]):
    self.dataset_path = dataset_path
    self.pool = tuple(pool)
    self.num_folds = num_folds
    self.classes = tuple(classes)
    spec = folds_lib.FoldSplit(self.pool, 0, num_folds, "test")
    source = builder.open_split(dataset_path, spec.name)
    self.sources = [builder.open_split(dataset_path, s) for s in self.pool]
    self.folds = source.folds
    self.ids, self.attributes = [], []
    for s in self.sources:
      for i in range(len(s)):
        record = s[i]
        self.ids.append(record["id"].decode())
        self.attributes.append(json.loads(record["attributes"]))
    index = {c: j for j, c in enumerate(self.classes)}
    self.labels = np.asarray([index.get(str(a.get(field)), -1) for a in self.attributes])
    missing = sorted({str(a.get(field)) for a, y in zip(self.attributes, self.labels)
                      if y < 0})
    if missing:
      raise ValueError(f"records whose {field} is not one of the classes: {missing}")

  def __len__(self) -> int:
    return len(self.ids)

  def waveform(self, position: int) -> np.ndarray:
    """Record `position`'s samples as float32 (full scale 1.0)."""
    for source in self.sources:
      if position < len(source):
        return audio_io.int16_to_float(np.asarray(source[position]["audio"]))
      position -= len(source)
    raise IndexError(position)

  def index_features(self, path: str) -> np.ndarray:
    """[N, d] embeddings of the pool's recordings, in pool order, from a library index.

    Raises:
      ValueError: the index lacks some pool recording.
    """
    index = library_index.load(path)
    rows = {i: n for n, i in enumerate(index.ids)}
    missing = [i for i in self.ids if i not in rows]
    if missing:
      raise ValueError(f"{path} lacks {len(missing)} of the {len(self.ids)} pool "
                       f"recordings, e.g. {missing[:3]}")
    return index.embeddings[[rows[i] for i in self.ids]]

  def fold_positions(self, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train positions, test positions) of one fold."""
    return np.flatnonzero(self.folds != fold), np.flatnonzero(self.folds == fold)


# ------------------------------------------------- a trained classifier ----
class WindowedClassifier:
  """A classifier run scoring whole recordings: mean log-softmax over windows."""

  def __init__(self, workdir: str, batch_size: int = 16):
    self.model, variables, self.config = classifier.restore_variables(workdir)
    self.params = variables["params"]
    self.batch_stats = variables.get("batch_stats", {})
    self.window = int(round(self.config.input.window_seconds * self.config.model.sample_rate))
    self.batch_size = batch_size

  @functools.cached_property
  def _apply(self):
    def apply(params, batch_stats, audio, lengths):
      (logits, embedding), _ = classifier.apply(self.model, params, batch_stats, audio,
                                                lengths)
      return jax.nn.log_softmax(logits.astype(jnp.float32)), embedding
    return jax.jit(apply)

  def __call__(self, waveforms: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(log-probabilities [N, C], embeddings [N, d]): means over each recording's windows."""
    cuts = [inference.cut_windows(w, self.window) for w in waveforms]
    windows = np.concatenate([c[0] for c in cuts])
    lengths = np.concatenate([c[1] for c in cuts])
    scores, embeddings = [], []
    for start in range(0, len(windows), self.batch_size):
      chunk = slice(start, start + self.batch_size)
      n = len(windows[chunk])
      audio = inference._pad_rows(windows[chunk], self.batch_size)  # pylint: disable=protected-access
      length = inference._pad_rows(lengths[chunk], self.batch_size)  # pylint: disable=protected-access
      s, e = self._apply(self.params, self.batch_stats, audio, length)
      scores.append(np.asarray(s)[:n])
      embeddings.append(np.asarray(e)[:n])
    scores, embeddings = np.concatenate(scores), np.concatenate(embeddings)
    bounds = np.cumsum([len(c[0]) for c in cuts])[:-1]
    return (np.stack([x.mean(0) for x in np.split(scores, bounds)]),
            np.stack([x.mean(0) for x in np.split(embeddings, bounds)]))


# ------------------------------------------------------------- rivals ----
def _logistic() -> Any:
  return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))


def sklearn_fold(features: np.ndarray, labels: np.ndarray, train: np.ndarray,
                 test: np.ndarray, num_classes: int) -> dict[str, float]:
  """p@k of a standardised multinomial logistic regression on one fold."""
  model = _logistic().fit(features[train], labels[train])
  scores = np.full((len(test), num_classes), -np.inf)
  scores[:, model.classes_] = model.predict_log_proba(features[test])
  return fold_scores(scores, labels[test])


def prior_fold(labels: np.ndarray, train: np.ndarray, test: np.ndarray,
               num_classes: int) -> dict[str, float]:
  """p@k of ranking classes by their frequency in the training folds."""
  counts = np.bincount(labels[train], minlength=num_classes).astype(np.float64)
  return fold_scores(np.tile(counts, (len(test), 1)), labels[test])


def summary_statistics(waveforms: Sequence[np.ndarray], sample_rate: int,
                       window_seconds: float = 10.0,
                       config: hyper_image_lib.HyperImageConfig = hyper_image_lib.HyperImageConfig(),
                       progress: Callable[[int], None] | None = None) -> np.ndarray:
  """[N, 2H] per-row mean and standard deviation over time of each recording's
  hyper-image (its consecutive windows' images, frames of padding left out)."""
  window = int(round(window_seconds * sample_rate))
  image_fn = jax.jit(lambda x: hyper_image_lib.hyper_image(x, sample_rate, config))
  hop = config.hop_length
  out = []
  for i, waveform in enumerate(waveforms):
    windows, lengths = inference.cut_windows(np.asarray(waveform, np.float32), window)
    images = np.asarray(image_fn(jnp.asarray(windows)))        # [W, H, T]
    frames = [images[j][:, :1 + int(lengths[j]) // hop] for j in range(len(images))]
    joined = np.concatenate(frames, axis=1)
    out.append(np.concatenate([joined.mean(1), joined.std(1)]))
    if progress is not None:
      progress(i + 1)
  return np.stack(out).astype(np.float32)


# ------------------------------------------------------------- report ----
def summarize(per_fold: Sequence[dict[str, float]]) -> dict[str, float]:
  """Mean and standard deviation over folds of each figure."""
  out = {}
  for key in per_fold[0]:
    values = np.asarray([f[key] for f in per_fold])
    out[key] = float(values.mean())
    out[key + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
  return out


def markdown(results: dict[str, list[dict[str, float]]]) -> str:
  """One row per method: mean ± std over folds of p@1 and p@3, then each fold's p@1."""
  num_folds = max(len(v) for v in results.values())
  head = ("| method | p@1 | p@3 | " + " | ".join(f"fold {i} p@1" for i in range(num_folds))
          + " |")
  lines = [head, "|" + "---|" * (3 + num_folds)]
  for name, per_fold in results.items():
    s = summarize(per_fold)
    cells = [f"{f['p@1']:.3f}" for f in per_fold] + [""] * (num_folds - len(per_fold))
    lines.append(f"| {name} | {s['p@1']:.3f} ± {s['p@1_std']:.3f} | "
                 f"{s['p@3']:.3f} ± {s['p@3_std']:.3f} | " + " | ".join(cells) + " |")
  return "\n".join(lines)
