"""A split of a built dataset as the evaluators read it, and attribute matching.

Evaluators take everything dataset-specific as data: which attributes to tag,
which words and prompt templates stand for a value, which queries to run.
This module only knows the built-dataset format (`jplaylist.data.builder`):
each record has an id, audio, texts by source kind and a JSON object of
attributes, whose values are a scalar (one label) or a list (several labels).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Sequence

import numpy as np

from jplaylist.data import audio_io
from jplaylist.data import builder


@dataclasses.dataclass
class Split:
  ids: list[str]
  waveforms: list[np.ndarray]
  attributes: list[dict]
  texts: list[dict[str, list[str]]]
  sample_rate: int
  name: str = ""


def load_split(dataset_path: str, split: str) -> Split:
  """One split of a built dataset: waveforms (float32), attributes and texts."""
  source = builder.open_split(dataset_path, split)
  records = [source[i] for i in range(len(source))]
  return Split(ids=[r["id"].decode() for r in records],
               waveforms=[audio_io.int16_to_float(np.asarray(r["audio"])) for r in records],
               attributes=[json.loads(r["attributes"]) for r in records],
               texts=[{kind: [t.decode() for t in texts] for kind, texts in r["texts"].items()}
                      for r in records],
               sample_rate=builder.sample_rate_of(dataset_path), name=split)


def values_of(attributes: Mapping[str, Any], name: str) -> set[str]:
  """The labels one recording has for an attribute (a set; empty when absent)."""
  value = attributes.get(name)
  if value is None:
    return set()
  if isinstance(value, (list, tuple)):
    return {str(v) for v in value}
  return {str(value)}


def matches(attributes: Mapping[str, Any], conditions: Mapping[str, Any]) -> bool:
  """Whether a recording has every {attribute: value} of `conditions`.

  A condition's value may be a list: any of its values matches (a tag that
  stands for several attribute values, e.g. "strings" for two families).
  """
  for name, wanted in conditions.items():
    wanted = {str(w) for w in wanted} if isinstance(wanted, (list, tuple)) else {str(wanted)}
    if not values_of(attributes, name) & wanted:
      return False
  return True


def tag_labels(attributes: Sequence[dict], family: str,
               tags: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
  """The tags of a family and the [N, T] bool labels (list-valued attributes are
  multi-label). `tags` fixes the tag list (e.g. a training split's)."""
  as_sets = [values_of(a, family) for a in attributes]
  tags = list(tags) if tags is not None else sorted(set().union(*as_sets))
  labels = np.array([[t in s for t in tags] for s in as_sets], bool).reshape(
      len(attributes), len(tags))
  return tags, labels


def categorical_families(attributes: Sequence[dict], max_values: int = 32) -> list[str]:
  """Attributes that read as tag families: text (or lists of text) with between
  2 and `max_values` distinct values. The default when a config names none."""
  names = sorted({k for a in attributes for k in a})
  out = []
  for name in names:
    values = [a.get(name) for a in attributes if a.get(name) is not None]
    flat = [v for x in values for v in (x if isinstance(x, list) else [x])]
    if flat and all(isinstance(v, str) for v in flat) and 2 <= len(set(flat)) <= max_values:
      out.append(name)
  return out


def prompt_texts(words: Sequence[str], templates: Sequence[str]) -> list[str]:
  """Every word in every template, word-major: [len(words) * len(templates)].

  A template names the word as `{tag}`, `{value}` or `{}`: "{tag} music".
  """
  out = []
  for word in words:
    for template in templates:
      try:
        out.append(template.format(word, tag=word, value=word))
      except (KeyError, IndexError) as e:
        raise ValueError(f"prompt template {template!r}: use {{tag}} for the tag; "
                         f"unknown field {e}") from e
  return out


def embed_prompts(model, words: Sequence[str], templates: Sequence[str]) -> np.ndarray:
  """[len(words), D] text embeddings: per word, the normalised mean over templates."""
  templates = tuple(templates)
  if not templates:
    raise ValueError("at least one prompt template is needed")
  text = model.embed_text(prompt_texts(words, templates))
  text = text.reshape(len(words), len(templates), -1).mean(axis=1)
  return text / np.linalg.norm(text, axis=1, keepdims=True)
