"""Zero-shot tagging over an outside tag vocabulary given as a file.

A vocabulary is a JSON list of tags, or a JSON object of named lists (as in
`music_tag_vocabularies.json`: "magnatagatune_top50", "mtg_jamendo_instrument",
...) from which `name` picks one. Each tag is prompted ("{tag} music") and
scored against every recording by cosine, as in `zero_shot.py`.

A tag can only be scored where the dataset says which recordings have it.
`mapping` gives that as data: tag -> {attribute: value} (a list of values
matches any; a list of such dicts matches any of them), e.g. "classical" ->
{"style": ["Baroque", "Classical", "Romantic"]}. A dataset whose attributes
hold raw tags names that attribute with `tag_attribute`, and its unmapped tags
are looked up there. A tag is evaluable when it is mapped (or `tag_attribute`
exists in the split) and has both positives and negatives in the split; the
report says how many of the vocabulary's tags were.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from jplaylist.evaluators import splits
from jplaylist.evaluators import zero_shot

Conditions = Mapping[str, Any]


def load_vocabulary(vocabulary: str | Sequence[str], name: str | None = None
                    ) -> tuple[str, list[str]]:
  """(name, tags) of a vocabulary: a JSON file (a list, or named lists) or a list.

  Raises:
    ValueError: the file holds named lists and `name` is missing or unknown, or
      it holds something other than lists of strings; duplicate tags.
  """
  if isinstance(vocabulary, str):
    path = os.path.expanduser(vocabulary)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"vocabulary file {vocabulary!r} does not exist")
    with open(path) as f:
      content = json.load(f)
    default_name = os.path.splitext(os.path.basename(path))[0]
  else:
    content, default_name = list(vocabulary), "vocabulary"
  if isinstance(content, dict):
    if name not in content:
      raise ValueError(f"vocabulary {vocabulary!r} holds named lists "
                       f"{sorted(content)}; pick one with name= (got {name!r})")
    tags, default_name = content[name], name
  else:
    tags = content
  if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
    raise ValueError(f"vocabulary {vocabulary!r} ({name or default_name}): expected a "
                     "list of non-empty strings")
  duplicates = sorted({t for t in tags if tags.count(t) > 1})
  if duplicates:
    raise ValueError(f"vocabulary {name or default_name}: duplicate tags {duplicates}")
  return name or default_name, list(tags)


def tag_matches(attributes: Mapping[str, Any], conditions: Conditions | Sequence[Conditions]
                ) -> bool:
  """Whether a recording has a tag mapped to `conditions` (a dict, or a list: any)."""
  if isinstance(conditions, Mapping):
    return splits.matches(attributes, conditions)
  return any(splits.matches(attributes, c) for c in conditions)


class VocabularyTagging:
  """Per-tag and mean AUC-ROC of zero-shot tags from a vocabulary file.

  Args:
    dataset_path: a built dataset.
    split: its split to evaluate.
    vocabulary: a JSON file (list or named lists) or the list itself.
    name: which named list of the file; also names the metrics
      (`zero_shot_vocab/<name>/...`).
    mapping: tag -> conditions on attributes (see the module docstring).
    tag_attribute: an attribute holding a list of raw tags, for unmapped tags.
    templates: prompt templates ("{tag} music").
  """

  def __init__(self, dataset_path: str, split: str = "test",
               vocabulary: str | Sequence[str] = (), name: str | None = None,
               mapping: Mapping[str, Conditions | Sequence[Conditions]] | None = None,
               tag_attribute: str | None = None, templates: Sequence[str] = ("{tag}",)):
    self.name, self.tags = load_vocabulary(vocabulary, name)
    if not self.tags:
      raise ValueError("vocabulary_tagging: the vocabulary is empty")
    self.mapping = dict(mapping or {})
    outside = sorted(set(self.mapping) - set(self.tags))
    if outside:
      raise ValueError(f"vocabulary_tagging: mapping names tags {outside} that are not "
                       f"in vocabulary {self.name}")
    self.data = splits.load_split(dataset_path, split)
    self.tag_attribute = tag_attribute
    self.templates = (templates,) if isinstance(templates, str) else tuple(templates)
    has_raw = bool(tag_attribute) and any(tag_attribute in a for a in self.data.attributes)
    self.labelled = [t for t in self.tags if t in self.mapping or has_raw]

  def labels(self) -> np.ndarray:
    """[N, T] bool over the labelled tags (`self.labelled`)."""
    out = np.zeros((len(self.data.attributes), len(self.labelled)), bool)
    for j, tag in enumerate(self.labelled):
      for i, attributes in enumerate(self.data.attributes):
        if tag in self.mapping:
          out[i, j] = tag_matches(attributes, self.mapping[tag])
        else:
          out[i, j] = tag in splits.values_of(attributes, self.tag_attribute)
    return out

  def scores(self, model) -> tuple[np.ndarray, np.ndarray]:
    """(labels [N, T], cosine scores [N, T]) over the labelled tags."""
    audio = model.embed_audio(self.data.waveforms, self.data.sample_rate)
    text = splits.embed_prompts(model, self.labelled, self.templates)
    return self.labels(), audio @ text.T

  def run(self, model) -> Iterator[tuple[str, float]]:
    prefix = f"zero_shot_vocab/{self.name}"
    yield f"{prefix}/vocabulary_size", float(len(self.tags))
    yield f"{prefix}/num_labelled", float(len(self.labelled))
    if not self.labelled:
      yield f"{prefix}/num_tags", 0.0
      return
    labels, scores = self.scores(model)
    yield from zero_shot.per_tag_results(prefix, self.labelled, labels, scores)
