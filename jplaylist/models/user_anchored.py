"""Networks of user-anchored metric learning (issue 16, item 4).

Two branches map a user and a track into one 40-d space, where the cosine of
a user's and a track's embeddings scores how much the user likes the track:

  UserBranch   YouTubeDNN-style: the mean of learned embeddings of the tracks
               in the user's listening history, concatenated with the user's
               demographic one-hot code, through dense layers with leaky ReLU
               -> [B, embed_dim]. It needs no per-user parameters, so it embeds
               users never seen in training. The history tracks' embeddings
               are a learned table over the library's track rows (the source
               uses embeddings of a pre-trained model; a table learned with the
               rest is what this library has without one). Held-out new tracks
               never appear in a history, so their rows stay untrained.
  UserLookup   the DCUE baseline: one free embedding per training user.
  AudioBranch  the Siamese audio network shared by every track of a pair:
               128-bin log-mel of a 3-s or 10-s window, 5 x [3x3 conv, layer
               norm, ReLU, 2x2 max-pool], mean and max over time and
               frequency, centred on the batch (`Centre`), a dense layer
               -> [B, embed_dim]. The pooled ReLU features share a large
               positive mean: uncentred, every window's embedding points the
               same way (mean pairwise cosine 0.988 at initialisation, 0.997
               after 200 steps of the hinge loss, measured on the demo
               corpus), the cosines differ by little and training moved
               nothing that generalised. The running mean is the
               `batch_stats` collection (`train=True` uses and updates the
               batch's). Only the mean is taken off: dividing by the batch's
               deviation too (batch normalisation) amplified the lag of the
               running variances of near-constant features, and a planted
               problem learned in training fell to chance in evaluation.

`Model` holds one user network (`user="branch"` or `"lookup"`) and the audio
branch; `embed_users` and `embed_audio` are its methods (`apply(...,
method=...)`); its variables are `params` and `batch_stats`.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jplaylist.audio import frontend as frontend_lib
from jplaylist.models import two_tower

USER_KINDS = ("branch", "lookup")


def frontend_config(window_seconds: float, num_mels: int = 128) -> frontend_lib.FrontendConfig:
  """128 Slaney mels at the native 10-ms hop over a window of `window_seconds`."""
  return frontend_lib.FrontendConfig(num_mels=num_mels, num_frames=None,
                                     window_seconds=float(window_seconds))


class UserBranch(nn.Module):
  """(history [B, H] int32, history_mask [B, H] bool, demographics [B, G]) -> [B, embed_dim]."""
  num_tracks: int
  track_dim: int = 64
  hidden: Sequence[int] = (128, 64)
  embed_dim: int = 40

  @nn.compact
  def __call__(self, history, history_mask, demographics):
    table = nn.Embed(self.num_tracks, self.track_dim, name="tracks",
                     embedding_init=nn.initializers.normal(0.1))
    mask = history_mask.astype(jnp.float32)[..., None]
    mean = jnp.sum(table(history) * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
    x = jnp.concatenate([mean, demographics.astype(jnp.float32)], axis=-1)
    for i, width in enumerate(self.hidden):
      x = nn.leaky_relu(nn.Dense(width, name=f"dense{i}")(x), negative_slope=0.2)
    return nn.Dense(self.embed_dim, name="out")(x)


class UserLookup(nn.Module):
  """user rows [B] int32 -> [B, embed_dim] (DCUE: a table of training users)."""
  num_users: int
  embed_dim: int = 40

  @nn.compact
  def __call__(self, user):
    return nn.Embed(self.num_users, self.embed_dim, name="users",
                    embedding_init=nn.initializers.normal(1.0))(user)


class Centre(nn.Module):
  """x minus a mean over the batch: the batch's own in training (and the
  running mean, in `batch_stats`, moves towards it), the running mean
  otherwise."""
  momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(x.shape[-1], jnp.float32))
    if not train:
      return x - mean.value
    batch_mean = jnp.mean(x, axis=0)
    if not self.is_initializing():
      mean.value = self.momentum * mean.value + (1.0 - self.momentum) * batch_mean
    return x - batch_mean


class AudioBranch(nn.Module):
  """Waveform windows [B, samples] (int16 or float) -> [B, embed_dim]."""
  window_seconds: float = 3.0
  num_mels: int = 128
  channels: Sequence[int] = (16, 32, 64, 64, 128)
  embed_dim: int = 40

  @nn.compact
  def __call__(self, audio, train: bool = False):
    log_mel = frontend_lib.log_mel(two_tower.waveform_to_float(audio),
                                   frontend_config(self.window_seconds, self.num_mels))
    # dB values around -100..0: a fixed affine keeps the first layer's input near unit scale.
    x = ((log_mel + 50.0) / 25.0)[..., None]                   # [B, T, M, 1]
    for i, width in enumerate(self.channels):
      x = nn.Conv(width, (3, 3), name=f"conv{i}")(x)
      x = nn.relu(nn.LayerNorm(name=f"norm{i}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    pooled = jnp.concatenate([jnp.mean(x, axis=(1, 2)), jnp.max(x, axis=(1, 2))], axis=-1)
    pooled = Centre(name="pool_norm")(pooled, train)
    return nn.Dense(self.embed_dim, name="out")(pooled)


class Model(nn.Module):
  """A user network and the Siamese audio branch (see the module docstring).

  Attributes:
    user: "branch" (UserBranch) or "lookup" (UserLookup, DCUE).
    num_tracks: rows of the history table (branch).
    num_users: rows of the user table (lookup).
  """
  user: str = "branch"
  num_tracks: int = 1
  num_users: int = 1
  embed_dim: int = 40
  track_dim: int = 64
  user_hidden: Sequence[int] = (128, 64)
  window_seconds: float = 3.0
  num_mels: int = 128
  channels: Sequence[int] = (16, 32, 64, 64, 128)

  def setup(self):
    if self.user not in USER_KINDS:
      raise ValueError(f"user={self.user!r}; known: {USER_KINDS}")
    if self.user == "branch":
      self.user_net = UserBranch(self.num_tracks, self.track_dim, tuple(self.user_hidden),
                                 self.embed_dim)
    else:
      self.user_net = UserLookup(self.num_users, self.embed_dim)
    self.audio_net = AudioBranch(self.window_seconds, self.num_mels, tuple(self.channels),
                                 self.embed_dim)

  def embed_users(self, users: dict[str, jax.Array]) -> jax.Array:
    """users: {"user" [B], "history" [B, H], "history_mask" [B, H], "demographics" [B, G]}."""
    if self.user == "branch":
      return self.user_net(users["history"], users["history_mask"], users["demographics"])
    return self.user_net(users["user"])

  def embed_audio(self, audio: jax.Array, train: bool = False) -> jax.Array:
    return self.audio_net(audio, train)

  def __call__(self, users, audio, train: bool = False):
    return self.embed_users(users), self.embed_audio(audio, train)


def cosine(users: jax.Array, tracks: jax.Array) -> jax.Array:
  """Cosine similarities of [..., d] user and track embeddings (broadcast)."""
  unit = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  return jnp.sum(unit(users) * unit(tracks), axis=-1)
