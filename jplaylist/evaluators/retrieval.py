"""Text-to-music retrieval, with every relevant recording counted, and caption retrieval.

Scores are cosines between text and audio embeddings (the mean of a
recording's 10-s windows), as in `zero_shot.py`. Two protocols:

- `TextToMusic` (datasets with attributes): a query stands for attribute
  values, e.g. "calm Baroque flute" for {mood: calm, style: Baroque,
  instruments: flute}, and every recording of the split that has all of them
  is relevant. Queries are data: a list of (text, {attribute: value}), or
  templates such as "{mood} {style} music for {instruments}" filled with every
  combination of values that occurs in the split (a value reads as
  `words[attribute][value]` when given). mAP beside its chance level (the
  exact expected AP of a random ranking, and the mean fraction of relevant
  recordings), AUC-ROC and recall@k.
- `CaptionRetrieval` (datasets with captions and no attributes): each
  recording's caption of one source kind and index (one its training did not
  use, for a held-out figure) is the query for that recording, and the
  recording the query for its caption, as MusicCaps-style benchmarks report:
  R@1/5/10 and median rank, text->music and music->text. Recordings that share
  a caption's exact text are all relevant to it (a duplicate is not a miss);
  ties with an irrelevant item count against the query.
"""

from __future__ import annotations

import itertools
import string
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from jplaylist.evaluators import metrics
from jplaylist.evaluators import splits
from jplaylist.evaluators import zero_shot


def template_fields(template: str) -> list[str]:
  """The attribute names a query template refers to, in order."""
  fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
  if not fields or any(not f or not f.isidentifier() for f in fields):
    raise ValueError(f"query template {template!r}: name each attribute, e.g. "
                     "'{mood} {style} music'")
  return list(dict.fromkeys(fields))


def queries_from_templates(attributes: Sequence[dict], templates: Mapping[str, str],
                           words: Mapping[str, Mapping[str, str]] | None = None
                           ) -> list[tuple[str, dict[str, str], str]]:
  """(text, conditions, kind) for every combination of values found in `attributes`.

  Args:
    attributes: the split's recordings' attributes.
    templates: kind -> template ("{mood} {style} music").
    words: how values read in text, by attribute.
  """
  out = []
  for kind, template in templates.items():
    fields = template_fields(template)
    combinations = set()
    for a in attributes:
      combinations.update(itertools.product(*(sorted(splits.values_of(a, f)) for f in fields)))
    for combination in sorted(combinations):
      conditions = dict(zip(fields, combination))
      text = template.format(**{f: zero_shot.word_of(words, f, v)
                                for f, v in conditions.items()})
      out.append((text, conditions, kind))
  return out


def _given_queries(queries: Sequence[Any]) -> list[tuple[str, dict, str]]:
  out = []
  for index, query in enumerate(queries):
    if isinstance(query, Mapping):
      text, conditions, kind = query.get("text"), query.get("attributes"), query.get(
          "kind", "given")
    elif isinstance(query, (list, tuple)) and len(query) in (2, 3):
      text, conditions, kind = query[0], query[1], (query[2] if len(query) == 3 else "given")
    else:
      text = conditions = kind = None
    if not isinstance(text, str) or not isinstance(conditions, Mapping) or not conditions:
      raise ValueError(f"query {index} {query!r}: expected (text, {{attribute: value}}) "
                       "or {'text': ..., 'attributes': {...}}")
    out.append((text, dict(conditions), str(kind)))
  return out


class TextToMusic:
  """Text-to-music retrieval from attribute queries, every matching recording relevant.

  Args:
    dataset_path: a built dataset.
    split: its split to evaluate.
    queries: (text, {attribute: value}[, kind]) or {"text", "attributes", "kind"}.
    templates: kind -> template, or a list of templates (each its own kind).
    words: {attribute: {value: words}} used to fill templates.
    max_queries_per_kind: keep a seeded random sample of this many queries per
      kind (None: all), for cheap evaluations during training.
    seed: of that sample.
    ks: recall@k cut-offs.
  """

  def __init__(self, dataset_path: str, split: str = "test",
               queries: Sequence[Any] = (), templates: Mapping[str, str] | Sequence[str] = (),
               words: Mapping[str, Mapping[str, str]] | None = None,
               max_queries_per_kind: int | None = None, seed: int = 0,
               ks: Sequence[int] = (1, 5, 10)):
    if not queries and not templates:
      raise ValueError("text_to_music: give `queries` (text, {attribute: value}) or "
                       "query `templates` ('{mood} {style} music')")
    self.data = splits.load_split(dataset_path, split)
    if not isinstance(templates, Mapping):
      templates = {t: t for t in templates}
    candidates = _given_queries(queries) + queries_from_templates(
        self.data.attributes, templates, words)
    relevant = np.array([[splits.matches(a, c) for a in self.data.attributes]
                         for _, c, _ in candidates], bool).reshape(len(candidates), -1)
    keep = relevant.any(axis=1)
    # Given queries that match nothing in this split have no AP; counted, not scored.
    self.num_without_relevant = int(np.sum(~keep))
    candidates = [q for q, k in zip(candidates, keep) if k]
    relevant = relevant[keep]
    if max_queries_per_kind:
      rng = np.random.default_rng(seed)
      kinds = np.array([k for _, _, k in candidates])
      chosen = []
      for kind in dict.fromkeys(kinds):
        rows = np.flatnonzero(kinds == kind)
        if len(rows) > max_queries_per_kind:
          rows = np.sort(rng.choice(rows, size=max_queries_per_kind, replace=False))
        chosen.extend(rows)
      chosen = np.sort(np.asarray(chosen, int))
      candidates, relevant = [candidates[i] for i in chosen], relevant[chosen]
    if not candidates:
      raise ValueError(f"text_to_music: no query has a relevant recording in split {split!r}")
    self.queries = [text for text, _, _ in candidates]
    self.conditions = [c for _, c, _ in candidates]
    self.kinds = [k for _, _, k in candidates]
    self.relevant = relevant
    self.ks = tuple(ks)

  def scores(self, model) -> tuple[np.ndarray, np.ndarray]:
    """(relevant [Q, N] bool, cosine scores [Q, N])."""
    audio = model.embed_audio(self.data.waveforms, self.data.sample_rate)
    return self.relevant, model.embed_text(self.queries) @ audio.T

  def run(self, model) -> Iterator[tuple[str, float]]:
    relevant, scores = self.scores(model)
    kinds = np.asarray(self.kinds)
    num_items = relevant.shape[1]
    for kind in ("all", *dict.fromkeys(self.kinds)):
      rows = np.ones(len(kinds), bool) if kind == "all" else kinds == kind
      # Queries are rows: the metrics run over the items of each query.
      yield f"text_to_music/{kind}/map", metrics.macro(metrics.per_class(
          metrics.average_precision, relevant[rows].T, scores[rows].T))
      yield f"text_to_music/{kind}/chance_map", float(np.mean(
          metrics.random_average_precision(relevant[rows].sum(axis=1), num_items)))
      yield f"text_to_music/{kind}/auc_roc", metrics.macro(metrics.per_class(
          metrics.roc_auc, relevant[rows].T, scores[rows].T))
      for k in self.ks:
        yield f"text_to_music/{kind}/recall@{k}", metrics.recall_at_k(
            relevant[rows], scores[rows], k)
      yield f"text_to_music/{kind}/num_queries", float(rows.sum())
    chance = float(np.mean(metrics.random_average_precision(relevant.sum(axis=1), num_items)))
    yield "text_to_music/chance_map", chance
    yield "text_to_music/relevant_fraction", float(np.mean(relevant.mean(axis=1)))
    yield "text_to_music/mean_relevant", float(np.mean(relevant.sum(axis=1)))
    yield "text_to_music/num_queries", float(len(self.queries))
    yield "text_to_music/num_queries_without_relevant", float(self.num_without_relevant)


def _rank_metrics(prefix: str, relevant: np.ndarray, scores: np.ndarray,
                  ks: Sequence[int]) -> Iterator[tuple[str, float]]:
  ranks = metrics.first_relevant_rank(relevant, scores)
  for k in ks:
    yield f"{prefix}/recall@{k}", float(np.mean(ranks <= k))
  yield f"{prefix}/median_rank", float(np.median(ranks))
  yield f"{prefix}/mean_rank", float(np.mean(ranks))


class CaptionRetrieval:
  """R@k and median rank of caption->recording and recording->caption retrieval.

  Args:
    dataset_path: a built dataset.
    split: its split to evaluate.
    source: the text source kind the captions come from ("LF", ...).
    index: which of a recording's texts of that kind (-1: the last); recordings
      without one are left out and counted.
    ks: recall@k cut-offs.
  """

  def __init__(self, dataset_path: str, split: str = "test", source: str = "LF",
               index: int = -1, ks: Sequence[int] = (1, 5, 10)):
    self.data = splits.load_split(dataset_path, split)
    kinds = sorted({k for t in self.data.texts for k in t})
    if source not in kinds:
      raise ValueError(f"caption_retrieval: no source kind {source!r} in split {split!r} "
                       f"of {dataset_path}; it has {kinds}")
    self.rows, self.captions = [], []
    for row, texts in enumerate(self.data.texts):
      options = texts.get(source, [])
      if -len(options) <= index < len(options) and options[index].strip():
        self.rows.append(row)
        self.captions.append(options[index])
    self.num_skipped = len(self.data.texts) - len(self.rows)
    if len(self.rows) < 2:
      raise ValueError(f"caption_retrieval: {len(self.rows)} recordings of split {split!r} "
                       f"have a {source}[{index}] caption; at least 2 are needed")
    self.source, self.index, self.ks = source, index, tuple(ks)
    # Distinct caption texts are the candidates of music->text and the queries
    # of text->music; every recording with that exact caption is relevant.
    self.texts = sorted(set(self.captions))
    position = {t: i for i, t in enumerate(self.texts)}
    self.relevant = np.zeros((len(self.texts), len(self.rows)), bool)
    self.relevant[[position[c] for c in self.captions], np.arange(len(self.rows))] = True

  def scores(self, model) -> tuple[np.ndarray, np.ndarray]:
    """(relevant [T, R] bool over distinct captions and recordings, cosines [T, R])."""
    audio = model.embed_audio([self.data.waveforms[r] for r in self.rows],
                              self.data.sample_rate)
    return self.relevant, model.embed_text(self.texts) @ audio.T

  def run(self, model) -> Iterator[tuple[str, float]]:
    relevant, scores = self.scores(model)
    yield from _rank_metrics("captions/text_to_music", relevant, scores, self.ks)
    yield from _rank_metrics("captions/music_to_text", relevant.T, scores.T, self.ks)
    yield "captions/num_recordings", float(len(self.rows))
    yield "captions/num_captions", float(len(self.texts))
    yield "captions/num_skipped", float(self.num_skipped)
