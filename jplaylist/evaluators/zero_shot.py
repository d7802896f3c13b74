"""Zero-shot tagging of a dataset's attribute families with the joint embedding.

The patent's protocol: the score of a tag for a recording is the cosine
between the recording's audio embedding (the mean of its 10-s windows) and
the tag's text embedding; nothing is trained on the evaluation data. Every
value of an attribute family (e.g. `instrument_families`, `mood`) is a tag.

Everything dataset-specific is data given by the config entry, not code:
which families, the words a value reads as (`words`, e.g. "minor" -> "minor
key"), the prompt templates per family ("{tag} music"), and which values of a
family to compare (`values`, e.g. slow against fast only). The figures are
class-balanced AUC-ROC and PR-AUC per family, and each tag's own AUC-ROC.
Zero-shot tagging over an outside tag vocabulary is `vocabulary.py`;
text-to-music and caption retrieval are `retrieval.py`.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from jplaylist.evaluators import metrics
from jplaylist.evaluators import splits

# Kept here for the modules and tests that load splits through this module.
Split = splits.Split
load_split = splits.load_split
tag_labels = splits.tag_labels


def word_of(words: Mapping[str, Mapping[str, str]] | None, family: str, value: str) -> str:
  """How a value of a family reads in text: `words[family][value]`, else the value."""
  return str(((words or {}).get(family) or {}).get(value, value))


def templates_of(templates: Sequence[str] | Mapping[str, Sequence[str]], family: str,
                 default: Sequence[str] = ("{tag}",)) -> tuple[str, ...]:
  """A family's prompt templates: one list for every family, or a dict by family
  (with an optional "*" entry for the families it does not name)."""
  if isinstance(templates, str):
    return (templates,)
  if isinstance(templates, Mapping):
    chosen = templates.get(family, templates.get("*", default))
    return (chosen,) if isinstance(chosen, str) else tuple(chosen)
  return tuple(templates)


def per_tag_results(prefix: str, tags: Sequence[str], labels: np.ndarray,
                    scores: np.ndarray, per_tag: bool = True) -> Iterator[tuple[str, float]]:
  """Class-balanced AUC-ROC, PR-AUC and its chance, the count of tags that have
  positives and negatives, and (per_tag) each such tag's AUC-ROC."""
  auc = metrics.per_class(metrics.roc_auc, labels, scores)
  yield f"{prefix}/auc_roc", metrics.macro(auc)
  yield f"{prefix}/pr_auc", metrics.macro(
      metrics.per_class(metrics.average_precision, labels, scores))
  yield f"{prefix}/pr_auc_chance", metrics.macro(
      np.where(np.isnan(auc), np.nan, labels.mean(axis=0)))
  yield f"{prefix}/num_tags", float(np.sum(~np.isnan(auc)))
  if per_tag:
    for tag, value in zip(tags, auc):
      if not np.isnan(value):
        yield f"{prefix}/tag/{tag}/auc_roc", float(value)


class ZeroShotTagging:
  """Class-balanced and per-tag AUC-ROC of zero-shot tags, per attribute family.

  Args:
    dataset_path: a built dataset.
    split: its split to evaluate.
    families: attribute names; None for every categorical attribute
      (`splits.categorical_families`).
    templates: prompt templates ("{tag} music"), for all families or a dict by
      family (with "*" for the rest); a tag's text embedding is the normalised
      mean over its templates.
    words: {family: {value: words}} for values that read differently in text.
    values: {family: [values]} to compare only those values (recordings with
      none of them are left out of that family), e.g. tempo slow vs fast.
    per_tag: also yield each tag's AUC-ROC.
  """

  def __init__(self, dataset_path: str, split: str = "test",
               families: Sequence[str] | None = None,
               templates: Sequence[str] | Mapping[str, Any] = ("{tag}",),
               words: Mapping[str, Mapping[str, str]] | None = None,
               values: Mapping[str, Sequence[str]] | None = None, per_tag: bool = True):
    self.data = splits.load_split(dataset_path, split)
    present = {k for a in self.data.attributes for k in a}
    if families is None:
      families = splits.categorical_families(self.data.attributes)
    missing = [f for f in families if f not in present]
    if missing:
      raise ValueError(f"zero_shot: families {missing} are not attributes of split "
                       f"{split!r} of {dataset_path} (it has {sorted(present)})")
    self.families = tuple(families)
    self.templates = templates
    self.words = words or {}
    self.values = {k: [str(v) for v in vs] for k, vs in (values or {}).items()}
    unknown = set(self.values) - set(self.families)
    if unknown:
      raise ValueError(f"zero_shot: `values` names families {sorted(unknown)} that are "
                       f"not in families {list(self.families)}")
    self.per_tag = per_tag

  def labels(self, family: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(tags, rows of the recordings compared [M] int, labels [M, T] bool)."""
    tags, labels = splits.tag_labels(self.data.attributes, family,
                                     self.values.get(family))
    rows = np.arange(len(labels))
    if family in self.values:
      rows = rows[labels.any(axis=1)]
    return tags, rows, labels[rows]

  def scores(self, model, family: str, audio: np.ndarray | None = None
             ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(tags, labels [M, T], cosine scores [M, T]) of one family."""
    tags, rows, labels = self.labels(family)
    if audio is None:
      audio = model.embed_audio(self.data.waveforms, self.data.sample_rate)
    text = splits.embed_prompts(model, [word_of(self.words, family, t) for t in tags],
                                templates_of(self.templates, family))
    return tags, labels, audio[rows] @ text.T

  def run(self, model) -> Iterator[tuple[str, float]]:
    audio = model.embed_audio(self.data.waveforms, self.data.sample_rate)
    for family in self.families:
      tags, labels, scores = self.scores(model, family, audio)
      if len(tags) < 2:
        continue
      yield from per_tag_results(f"zero_shot/{family}", tags, labels, scores, self.per_tag)
