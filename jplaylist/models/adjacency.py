"""Networks of the self-supervised adversarial embedding (issue 14).

  Embedder       waveform window -> log-mel -> M-ResNet -> [B, d], not
                 normalised: its distribution is shaped to a Gaussian prior
                 N(0, I), so the space can be sampled.
  AdjacencyHead  a small classifier on the concatenation of two embeddings:
                 are the two passages adjacent in one recording? (logit)
  Discriminator  embedding vs a sample of the prior (logit: "from the prior").

The embedder reuses the contrastive audio tower (`resnet.Model`, without its
L2 normalisation) over the same log-mel frontend, at the trainer's window
length rather than a fixed 10 s, pooling only over frames of real audio.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jplaylist.audio import frontend as frontend_lib
from jplaylist.models import pooling as pooling_lib
from jplaylist.models import resnet as resnet_lib
from jplaylist.models import two_tower


def frontend_config(window_seconds: float, num_mels: int = 64) -> frontend_lib.FrontendConfig:
  """The log-mel of a window: the "resnet" preset's framing at its native frame count."""
  return frontend_lib.FrontendConfig(num_mels=num_mels, num_frames=None,
                                     window_seconds=float(window_seconds))


class Embedder(nn.Module):
  """Waveform windows [B, samples] (int16 or float) -> embeddings [B, embed_dim].

  Attributes:
    variant: M-ResNet variant ("tiny", "18", "50").
    embed_dim: embedding size (the prior's dimension).
    window_seconds: window length (sets the frontend).
    num_mels: mel bands.
    pooling: "mean", "mean_std" or "mean_max" over time.
  """

  variant: str = "tiny"
  embed_dim: int = 32
  window_seconds: float = 3.0
  num_mels: int = 64
  pooling: str = "mean"

  @nn.compact
  def __call__(self, audio: jax.Array, audio_length: jax.Array | None = None, *,
               train: bool = False) -> jax.Array:
    config = frontend_config(self.window_seconds, self.num_mels)
    log_mel = frontend_lib.log_mel(two_tower.waveform_to_float(audio), config)
    frame_mask = None
    if audio_length is not None:
      frame_mask = pooling_lib.frame_mask(
          two_tower.valid_samples(audio_length, audio.shape[1]), config)
    return resnet_lib.Model(variant=self.variant, embed_dim=self.embed_dim,
                            pooling=self.pooling, normalize=False, name="tower")(
                                log_mel, frame_mask=frame_mask, train=train)


class AdjacencyHead(nn.Module):
  """[B, d] x [B, d] -> [B] logits of "adjacent": an MLP on [a, b]."""

  hidden: int = 64

  @nn.compact
  def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
    x = jnp.concatenate([a, b], axis=-1)
    x = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
    return nn.Dense(1, name="logit")(x)[..., 0]


class Discriminator(nn.Module):
  """[B, d] -> [B] logits of "drawn from the prior" (leaky-ReLU MLP)."""

  hidden: int = 64
  layers: int = 2

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    x = z
    for i in range(self.layers):
      x = nn.leaky_relu(nn.Dense(self.hidden, name=f"hidden{i + 1}")(x), 0.2)
    return nn.Dense(1, name="logit")(x)[..., 0]
