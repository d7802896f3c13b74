"""Text triplets: does the text tower place a music term near its description?

From the AudioSet music ontology, as the patent describes: each class name is
an anchor, its one-sentence description the positive, and the descriptions of
five other random classes the negatives; a triplet (anchor, positive,
negative) is right when cos(anchor, positive) > cos(anchor, negative).
Accuracy is over all triplets; chance is 0.5. The untuned text tower (the
all-MiniLM-L6-v2 checkpoint, mean-pooled as it was trained) is the baseline.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jplaylist.data import ontology
from jplaylist.data import tokenizer as tokenizer_lib
from jplaylist.models import bert


def build_triplets(classes: Sequence[ontology.OntologyClass], *, num_negatives: int = 5,
                   seed: int = 0) -> tuple[list[str], list[str], list[list[str]]]:
  """(anchors, positives, negatives per anchor) over classes with descriptions."""
  usable = [c for c in classes if c.description.strip()]
  rng = np.random.default_rng(seed)
  anchors, positives, negatives = [], [], []
  for index, cls in enumerate(usable):
    others = [j for j in range(len(usable)) if j != index]
    picked = rng.choice(len(others), size=num_negatives, replace=False)
    anchors.append(cls.name)
    positives.append(cls.description)
    negatives.append([usable[others[j]].description for j in picked])
  return anchors, positives, negatives


def triplet_accuracy(embed: Callable[[list[str]], np.ndarray], anchors, positives,
                     negatives) -> float:
  """Fraction of (anchor, positive, negative) triplets ranked right by `embed`."""
  # Negatives repeat the same descriptions: embed each distinct text once.
  flat_negatives = [t for ts in negatives for t in ts]
  unique = sorted(set(anchors) | set(positives) | set(flat_negatives))
  table = dict(zip(unique, embed(unique)))
  a = np.stack([table[t] for t in anchors])
  p = np.stack([table[t] for t in positives])
  n = np.stack([table[t] for t in flat_negatives]).reshape(len(anchors), -1, a.shape[1])
  positive_cos = np.sum(a * p, axis=1)
  negative_cos = np.einsum("td,tkd->tk", a, n)
  return float(np.mean(positive_cos[:, None] > negative_cos))


@functools.lru_cache(maxsize=1)
def _minilm():
  encoder = bert.BertEncoder(**bert.decode_variant("minilm-l6"), dropout_rate=0.0,
                             attention_dropout_rate=0.0)
  shapes = jax.eval_shape(encoder.init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32),
                          jnp.ones((1, 8), jnp.int32))
  params, _ = bert.load({"encoder": shapes["params"]}, bert.default_minilm_path())
  return encoder, jax.device_put(params["encoder"])


def mean_pooled_minilm(texts: list[str], max_length: int = 128) -> np.ndarray:
  """all-MiniLM-L6-v2 sentence embeddings: masked mean of the last layer, L2-normalised."""
  encoder, params = _minilm()
  ids, mask = tokenizer_lib.encode(texts, max_length)
  # Pad only to the longest text (rounded up to 16) rather than max_length.
  length = min(max_length, -(-int(mask.sum(axis=1).max()) // 16) * 16)
  ids, mask = ids[:, :length], mask[:, :length]
  sequence, _ = jax.jit(encoder.apply)({"params": params}, ids, mask)
  mask_f = mask[..., None].astype(np.float32)
  mean = np.asarray(sequence).astype(np.float32) * mask_f
  mean = mean.sum(axis=1) / np.maximum(mask_f.sum(axis=1), 1.0)
  return mean / np.linalg.norm(mean, axis=1, keepdims=True)


class TextTriplets:
  """Triplet accuracy of a model's text tower, with chance and MiniLM baselines."""

  def __init__(self, ontology_path: str | None = None, num_negatives: int = 5,
               seed: int = 0, baseline: bool = True):
    self.anchors, self.positives, self.negatives = build_triplets(
        ontology.load(ontology_path), num_negatives=num_negatives, seed=seed)
    self.baseline = baseline

  def run(self, model) -> Iterator[tuple[str, float]]:
    yield "text_triplets/accuracy", triplet_accuracy(
        model.embed_text, self.anchors, self.positives, self.negatives)
    if self.baseline:
      yield "text_triplets/accuracy_minilm_mean_pooled", triplet_accuracy(
          mean_pooled_minilm, self.anchors, self.positives, self.negatives)
    yield "text_triplets/chance", 0.5
    yield "text_triplets/num_triplets", float(len(self.anchors) * len(self.negatives[0]))
