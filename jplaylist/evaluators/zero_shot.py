"""Zero-shot evaluations of the joint embedding: tagging and text-to-music retrieval.

Both follow the patent's protocol: the score of a text for a recording is the
cosine between the recording's audio embedding (the mean of its 10-s
windows) and the text's embedding; nothing is trained on the evaluation data.

An evaluator is built from its settings and `run(model)` yields
`(name, value)` pairs, `model` being a `jplaylist.inference.Model`.

- `ZeroShotTagging`: every value of an attribute family of the demo corpus
  (instrument family, instrument, style, genre, tempo, mode, mood, ensemble)
  becomes a tag; class-balanced AUC-ROC and PR-AUC per family.
- `TextToMusic`: for every recording, long-form and playlist-title queries
  written from its attributes with templates the corpus never uses; the
  recording is the relevant item among the split's recordings. mAP,
  AUC-ROC and recall@k, with the chance mAP beside them.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Iterator, Sequence

import numpy as np

from jplaylist.data import audio_io
from jplaylist.data import builder
from jplaylist.data.demo import annotations
from jplaylist.evaluators import metrics

# Attribute families of the demo corpus and how a value reads as a tag.
FAMILIES = ("instrument_families", "instruments", "style", "genre", "tempo_class",
            "mode", "mood", "ensemble")
_TAG_WORDS = {"tempo_class": {"slow": "slow", "moderate": "moderate tempo", "fast": "fast"},
              "mode": {"major": "major key", "minor": "minor key"}}


@dataclasses.dataclass
class Split:
  ids: list[str]
  waveforms: list[np.ndarray]
  attributes: list[dict]
  sample_rate: int


def load_split(dataset_path: str, split: str) -> Split:
  """One split of a built dataset as waveforms (float32) and decoded attributes."""
  source = builder.open_split(dataset_path, split)
  records = [source[i] for i in range(len(source))]
  return Split(ids=[r["id"].decode() for r in records],
                waveforms=[audio_io.int16_to_float(np.asarray(r["audio"])) for r in records],
                attributes=[json.loads(r["attributes"]) for r in records],
                sample_rate=builder.sample_rate_of(dataset_path))


def tag_text(family: str, value: str) -> str:
  return _TAG_WORDS.get(family, {}).get(value, str(value))


def tag_labels(attributes: Sequence[dict], family: str,
               tags: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
  """The tags of a family and the [N, T] bool labels (list-valued attributes are
  multi-label). `tags` fixes the tag list (e.g. a training split's)."""
  values = [a.get(family) for a in attributes]
  as_sets = [set(v) if isinstance(v, list) else ({v} if v is not None else set())
             for v in values]
  tags = list(tags) if tags is not None else sorted(set().union(*as_sets))
  labels = np.array([[t in s for t in tags] for s in as_sets], bool).reshape(len(values),
                                                                              len(tags))
  return tags, labels


class ZeroShotTagging:
  """Class-balanced AUC-ROC and PR-AUC of zero-shot tags, per attribute family."""

  def __init__(self, dataset_path: str, split: str = "test",
               families: Sequence[str] = FAMILIES, templates: Sequence[str] = ("{}",)):
    self.data = load_split(dataset_path, split)
    self.families = tuple(families)
    self.templates = tuple(templates)

  def scores(self, model, family: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(tags, labels [N, T], cosine scores [N, T]) of one family."""
    tags, labels = tag_labels(self.data.attributes, family)
    audio = model.embed_audio(self.data.waveforms, self.data.sample_rate)
    # A tag's text embedding is the normalised mean over the prompt templates.
    texts = [template.format(tag_text(family, t)) for t in tags for template in self.templates]
    text = model.embed_text(texts).reshape(len(tags), len(self.templates), -1).mean(axis=1)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    return tags, labels, audio @ text.T

  def run(self, model) -> Iterator[tuple[str, float]]:
    for family in self.families:
      tags, labels, scores = self.scores(model, family)
      if len(tags) < 2:
        continue
      auc = metrics.per_class(metrics.roc_auc, labels, scores)
      yield f"zero_shot/{family}/auc_roc", metrics.macro(auc)
      yield f"zero_shot/{family}/pr_auc", metrics.macro(
          metrics.per_class(metrics.average_precision, labels, scores))
      yield f"zero_shot/{family}/pr_auc_chance", metrics.macro(
          np.where(np.isnan(auc), np.nan, labels.mean(axis=0)))
      yield f"zero_shot/{family}/num_tags", float(np.sum(~np.isnan(auc)))


class TextToMusic:
  """Retrieval of each recording from queries worded with unseen templates."""

  def __init__(self, dataset_path: str, split: str = "test", seed: int = 0,
               queries_per_kind: int = 1, ks: Sequence[int] = (1, 5, 10)):
    self.data = load_split(dataset_path, split)
    rng = np.random.default_rng(seed)
    self.queries, self.targets, self.kinds = [], [], []
    for index, attrs in enumerate(self.data.attributes):
      for kind, texts in annotations.heldout_queries(attrs, rng, queries_per_kind).items():
        for text in texts:
          self.queries.append(text)
          self.targets.append(index)
          self.kinds.append(kind)
    self.ks = tuple(ks)

  def scores(self, model) -> tuple[np.ndarray, np.ndarray]:
    """(relevant [Q, N] bool, cosine scores [Q, N])."""
    audio = model.embed_audio(self.data.waveforms, self.data.sample_rate)
    text = model.embed_text(self.queries)
    relevant = np.zeros((len(self.queries), len(audio)), bool)
    relevant[np.arange(len(self.queries)), self.targets] = True
    return relevant, text @ audio.T

  def run(self, model) -> Iterator[tuple[str, float]]:
    relevant, scores = self.scores(model)
    kinds = np.asarray(self.kinds)
    candidates = relevant.shape[1]
    for kind in ("all", *sorted(set(self.kinds))):
      rows = np.ones(len(kinds), bool) if kind == "all" else kinds == kind
      # Queries are rows: the metrics run over the items of each query.
      yield f"text_to_music/{kind}/map", metrics.macro(metrics.per_class(
          metrics.average_precision, relevant[rows].T, scores[rows].T))
      yield f"text_to_music/{kind}/auc_roc", metrics.macro(metrics.per_class(
          metrics.roc_auc, relevant[rows].T, scores[rows].T))
      for k in self.ks:
        yield f"text_to_music/{kind}/recall@{k}", metrics.recall_at_k(
            relevant[rows], scores[rows], k)
    # One relevant item at a uniformly random rank among N: E[1 / rank].
    yield "text_to_music/chance_map", float(np.mean(1.0 / np.arange(1, candidates + 1)))
    yield "text_to_music/num_queries", float(len(self.queries))
