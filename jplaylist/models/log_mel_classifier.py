"""An M-ResNet clip classifier over log-mel: the hyper-image CNN's comparison.

  waveform window -> log-mel -> M-ResNet (pooled over real frames) -> [B, d]
  embedding -> dense -> class logits

The audio tower of the contrastive model (`resnet.Model`, stride-1 stem,
without its L2 normalisation) at the trainer's window length
(`adjacency.Embedder`), with a linear output layer, so the classifier trainer
(`trainers/classifier.py`, `config.model.kind = "mresnet"`) can train it
exactly as it trains the hyper-image CNN and compare the two on the same folds.
Returns (logits, embedding), like the other classifier models.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jplaylist.models import adjacency


class Model(nn.Module):
  """Waveform windows [B, samples] -> (logits [B, C], embeddings [B, embed_dim])."""

  num_classes: int
  variant: str = "tiny"
  embed_dim: int = 128
  window_seconds: float = 10.0
  num_mels: int = 64
  pooling: str = "mean"

  @nn.compact
  def __call__(self, audio: jax.Array, audio_length: jax.Array | None = None, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    embedding = adjacency.Embedder(variant=self.variant, embed_dim=self.embed_dim,
                                   window_seconds=self.window_seconds,
                                   num_mels=self.num_mels, pooling=self.pooling,
                                   name="embedder")(audio, audio_length, train=train)
    return nn.Dense(self.num_classes, name="output")(embedding), embedding


def build(config: ml_collections.ConfigDict) -> Model:
  """The model of a classifier config whose `model.kind` is "mresnet"."""
  model = config.model
  return Model(num_classes=len(config.labels.classes), variant=model.variant,
               embed_dim=model.embed_dim, window_seconds=config.input.window_seconds,
               num_mels=model.get("num_mels", 64), pooling=model.get("pooling", "mean"))


def init(model: Model, rng: jax.Array, *, sample_rate: int, batch_size: int = 2):
  """Variables ({"params", "batch_stats"}) of `model` at its window length."""
  samples = int(round(model.window_seconds * sample_rate))
  audio = jnp.zeros((batch_size, samples), jnp.int16)
  return model.init({"params": rng}, audio, jnp.full((batch_size,), samples, jnp.int32))
