"""The hyper-image genre CNN (issue 16): a clip's hyper-image -> genre logits.

The network of the hyper-image paper, read from a clip's stacked, normalised
features (`jplaylist.audio.hyper_image`, computed inside the model, on
device):

  input            [H, W] hyper-image, one channel
  conv1            64 filters, receptive field 15 x 15, stride 5, ReLU
  norm1            local response normalisation across channels
  pool1            max pooling 3 x 3, stride 2
  conv2            64 filters, receptive field 5 x 5, stride 1, ReLU
  norm2            local response normalisation
  pool2            max pooling 3 x 3, stride 2
  fc1              384 units, ReLU
  fc2              192 units, ReLU: the song embedding used for similarity
  output           class logits (softmax in the loss)

The local response normalisation is AlexNet's, with the parameters of the
CIFAR-10 network this layout follows (`local_response_norm`). The model
returns (logits, embedding) so the classifier trainer can use it in place of
the CRNN (`trainers/classifier.py`, `config.model.kind = "hyper_cnn"`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jplaylist.audio import hyper_image as hyper_image_lib
from jplaylist.models import two_tower

EMBED_DIM = 192


def local_response_norm(x: jax.Array, depth_radius: int = 4, bias: float = 1.0,
                        alpha: float = 0.001 / 9.0, beta: float = 0.75) -> jax.Array:
  """x / (bias + alpha * sum of x^2 over channels c - r .. c + r) ** beta.

  x: [..., C], channels last; the window is clipped at the first and last
  channel (`tf.nn.local_response_normalization`'s definition).
  """
  squared = jnp.square(x)
  channels = x.shape[-1]
  padded = jnp.pad(squared, [(0, 0)] * (x.ndim - 1) + [(depth_radius, depth_radius)])
  window = sum(padded[..., i:i + channels] for i in range(2 * depth_radius + 1))
  return x / jnp.power(bias + alpha * window, beta)


class Model(nn.Module):
  """Waveform windows [B, samples] -> (logits [B, C], embeddings [B, 192])."""

  num_classes: int
  sample_rate: int = 16_000
  features: hyper_image_lib.HyperImageConfig = hyper_image_lib.HyperImageConfig()
  filters: int = 64
  hidden: tuple[int, int] = (384, EMBED_DIM)
  dropout: float = 0.0

  @nn.compact
  def __call__(self, audio: jax.Array, audio_length: jax.Array | None = None, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    waveform = two_tower.waveform_to_float(audio)
    if audio_length is not None:  # padding is silence
      waveform = jnp.where(two_tower.valid_samples(audio_length, audio.shape[1]), waveform, 0.0)
    image = hyper_image_lib.hyper_image(waveform, self.sample_rate, self.features)
    x = image[..., None]                                             # [B, H, W, 1]
    x = nn.relu(nn.Conv(self.filters, (15, 15), strides=(5, 5), padding="SAME",
                        name="conv1")(x))
    x = nn.max_pool(local_response_norm(x), (3, 3), strides=(2, 2), padding="SAME")
    x = nn.relu(nn.Conv(self.filters, (5, 5), strides=(1, 1), padding="SAME",
                        name="conv2")(x))
    x = nn.max_pool(local_response_norm(x), (3, 3), strides=(2, 2), padding="SAME")
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.hidden[0], name="fc1")(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    embedding = nn.relu(nn.Dense(self.hidden[1], name="fc2")(x))
    logits = nn.Dense(self.num_classes, name="output")(
        nn.Dropout(self.dropout, deterministic=not train)(embedding))
    return logits, embedding


def build(config: ml_collections.ConfigDict) -> Model:
  """The model of a classifier config whose `model.kind` is "hyper_cnn"."""
  model = config.model
  features = hyper_image_lib.HyperImageConfig(**dict(model.get("features", {}) or {}))
  return Model(num_classes=len(config.labels.classes), sample_rate=model.sample_rate,
               features=features, filters=model.filters,
               hidden=tuple(model.hidden), dropout=model.dropout)


def init(model: Model, rng: jax.Array, *, window_seconds: float,
         batch_size: int = 1) -> dict[str, Any]:
  """Variables of `model` for windows of `window_seconds`."""
  samples = int(round(window_seconds * model.sample_rate))
  audio = jnp.zeros((batch_size, samples), jnp.int16)
  variables = model.init({"params": rng}, audio, jnp.full((batch_size,), samples, jnp.int32))
  return {"params": variables["params"]}

