"""Convolutional-recurrent network with attention over time, for clip-level labels.

The DJ source's highlight extractor (issue 15, item 4): a classifier trained
on a track-level label (genre, style) whose attention over time says which
frames carried the decision; weighted by energy and summed over S seconds it
marks the highlight (`jplaylist/mixing/highlights.py` takes the curve). The
layout follows the CRNN of Choi et al. (2017, "Convolutional recurrent
neural networks for music classification") with the attention pooling of
Huang et al. (2018, "Pop music highlighter"):

  waveform -> log-mel [B, T, M] (the ResNet's frontend, 25-ms frames)
  -> conv blocks (3x3 conv, per-frame LayerNorm, ReLU, 2x max-pool over mel
     only, so time keeps the log-mel frame rate)
  -> a bidirectional GRU or LSTM over time (flax.linen.RNN) -> h [B, T, 2H]
  -> attention scores w^T tanh(W h_t); softmax over the valid frames -> a [B, T]
  -> pooled features sum_t a_t h_t -> dropout -> class logits [B, C].

The attention curve is at the log-mel frame rate (`frame_seconds`), sums to 1
over each clip's valid frames, and is exactly 0 on end padding (frames that
`pooling.frame_mask` marks as not wholly real audio). The GRU reads each clip
only up to its last valid frame (`seq_lengths`), so its backward direction
starts at real audio, not at padding. Normalisation is per frame (LayerNorm
over mel bins and channels) rather than BatchNorm: it does not mix padding
into statistics, and the model keeps no `batch_stats`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jplaylist.audio import frontend as frontend_lib
from jplaylist.models import pooling as pooling_lib
from jplaylist.models import two_tower

RNNS = ("gru", "lstm")


@dataclasses.dataclass(frozen=True)
class Variant:
  conv_channels: tuple[int, ...]   # one conv block each
  rnn_features: int                # per direction
  attention_features: int


VARIANTS = {
    "tiny": Variant(conv_channels=(8, 16), rnn_features=16, attention_features=16),
    "small": Variant(conv_channels=(16, 32, 32), rnn_features=32, attention_features=32),
    "base": Variant(conv_channels=(32, 64, 64, 128), rnn_features=64, attention_features=64),
}


def decode_variant(name: str) -> Variant:
  if name not in VARIANTS:
    raise ValueError(f"unknown CRNN variant {name!r}; known: {', '.join(VARIANTS)}")
  return VARIANTS[name]


def frontend_config(preset: str, window_seconds: float,
                    frames_per_second: float) -> frontend_lib.FrontendConfig:
  """A log-mel preset at `frames_per_second` output frames over a window.

  The presets fix 400 frames per 10-s window; a classifier's windows may be
  shorter, so the frame count follows the window to keep the frame rate.
  """
  base = frontend_lib.decode(preset)
  if not isinstance(base, frontend_lib.FrontendConfig):
    raise ValueError(f"the CRNN needs a log-mel preset, not {preset!r}")
  return dataclasses.replace(base, window_seconds=window_seconds,
                             num_frames=max(1, int(round(window_seconds * frames_per_second))))


def frame_seconds(frontend: frontend_lib.FrontendConfig) -> float:
  """Seconds between attention frames (the log-mel frame rate)."""
  if frontend.num_frames:
    return frontend.window_seconds / frontend.num_frames
  return frontend.hop_length / frontend.sample_rate


def masked_softmax(scores: jax.Array, valid: jax.Array) -> jax.Array:
  """Softmax over the last axis restricted to `valid`; exactly 0 elsewhere.

  Args:
    scores: [B, T] attention scores.
    valid: [B, T] bool.

  Returns:
    [B, T] weights summing to 1 over each row's valid entries (a row with no
    valid entry is all 0).
  """
  scores = jnp.where(valid, scores, -jnp.inf)
  peak = jnp.max(scores, axis=-1, keepdims=True)
  peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
  weights = jnp.where(valid, jnp.exp(scores - peak), 0.0)
  total = jnp.sum(weights, axis=-1, keepdims=True)
  return weights / jnp.where(total > 0, total, 1.0)


class ConvBlock(nn.Module):
  channels: int

  @nn.compact
  def __call__(self, x):  # [B, T, F, C]
    x = nn.Conv(self.channels, (3, 3), padding="SAME", name="conv")(x)
    x = nn.LayerNorm(reduction_axes=(-2, -1), feature_axes=-1, name="norm")(x)
    x = nn.relu(x)
    return nn.max_pool(x, (1, 2), strides=(1, 2))


class Model(nn.Module):
  """CRNN with attention pooling over time.

  Attributes:
    num_classes: outputs of the classifier head.
    frontend: the log-mel settings (`frontend_config`).
    variant: "tiny", "small" or "base" (`VARIANTS`).
    rnn: "gru" or "lstm".
    bidirectional: read time both ways (features 2H) or forward only (H).
    dropout: on the pooled features, in training.
  """

  num_classes: int
  frontend: frontend_lib.FrontendConfig
  variant: str = "small"
  rnn: str = "gru"
  bidirectional: bool = True
  dropout: float = 0.1

  @nn.compact
  def __call__(self, audio: jax.Array, audio_length: jax.Array | None = None, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Class logits and attention over frames.

    Args:
      audio: [B, samples] int16 or float waveforms at the frontend's rate.
      audio_length: [B] real samples at the start of each row; None: all real.
      train: dropout on (needs a "dropout" rng).

    Returns:
      (logits [B, num_classes], attention [B, T]): T output frames of the
      frontend, `frame_seconds(frontend)` apart.
    """
    spec = decode_variant(self.variant)
    if self.rnn not in RNNS:
      raise ValueError(f"unknown rnn {self.rnn!r}; known: {', '.join(RNNS)}")
    log_mel = frontend_lib.log_mel(two_tower.waveform_to_float(audio), self.frontend)
    num_frames = log_mel.shape[1]
    if audio_length is None:
      valid = jnp.ones(log_mel.shape[:2], bool)
    else:
      valid = pooling_lib.frame_mask(
          two_tower.valid_samples(audio_length, audio.shape[1]), self.frontend)
    # Padding is at the end, so the valid frames are a prefix of each row.
    lengths = jnp.sum(valid, axis=1).astype(jnp.int32)

    # dB around -100..+20; scaled near unit range before the first conv.
    x = (log_mel[..., None] + 50.0) / 20.0
    for i, channels in enumerate(spec.conv_channels):
      x = ConvBlock(channels, name=f"block_{i}")(x)
    x = x.reshape(x.shape[0], num_frames, -1)  # [B, T, F' * C]

    def cell(name):
      if self.rnn == "gru":
        return nn.GRUCell(spec.rnn_features, name=name)
      return nn.OptimizedLSTMCell(spec.rnn_features, name=name)
    if self.bidirectional:
      rnn = nn.Bidirectional(nn.RNN(cell("forward_cell")), nn.RNN(cell("backward_cell")),
                             name="rnn")
    else:
      rnn = nn.RNN(cell("forward_cell"), name="rnn")
    hidden = rnn(x, seq_lengths=lengths)  # [B, T, H or 2H]
    self.sow("intermediates", "hidden", hidden)

    scores = nn.Dense(1, name="attention_score")(
        jnp.tanh(nn.Dense(spec.attention_features, name="attention_hidden")(hidden)))[..., 0]
    self.sow("intermediates", "scores", scores)
    attention = masked_softmax(scores, valid)
    pooled = jnp.einsum("bt,bth->bh", attention, hidden)
    pooled = nn.Dropout(self.dropout, deterministic=not train)(pooled)
    logits = nn.Dense(self.num_classes, name="head")(pooled)
    return logits, attention


def build(config: ml_collections.ConfigDict) -> Model:
  """The model of a classifier config (`configs/highlights.py`)."""
  model = config.model
  frontend = frontend_config(model.frontend, config.input.window_seconds,
                             model.frames_per_second)
  return Model(num_classes=len(config.labels.classes), frontend=frontend,
               variant=model.variant, rnn=model.rnn, bidirectional=model.bidirectional,
               dropout=model.dropout)


def init(model: Model, rng: jax.Array, *, batch_size: int = 1) -> dict[str, Any]:
  """Variables of `model` for windows of its frontend's length."""
  samples = int(round(model.frontend.window_seconds * model.frontend.sample_rate))
  audio = jnp.zeros((batch_size, samples), jnp.int16)
  lengths = jnp.full((batch_size,), samples, jnp.int32)
  variables = model.init({"params": rng}, audio, lengths, train=False)
  return {"params": variables["params"]}


def load(params: dict[str, Any], path: str, *, strict: bool = True
         ) -> tuple[dict[str, Any], dict[str, Any]]:
  """Parameters of another classifier run (its latest checkpoint) over `params`.

  Args:
    params: this model's parameters (shapes to fill).
    path: a workdir of a run of the classifier trainer.
    strict: fail on parameters that are only in one of the two; otherwise
      keep this model's own for those (a new head for other classes, say).

  Returns:
    (params, {"loaded": [paths], "kept": [paths kept from `params`]}).
  """
  from jplaylist import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  saved = dict(_flatten(checkpoint_lib.restore_params(path)))
  own = dict(_flatten(params))
  missing, leftover = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
  if strict and (missing or leftover):
    raise ValueError(f"{path}: parameters missing from the checkpoint {missing}, "
                     f"not in this model {leftover}")
  loaded, kept = [], []
  for name, value in own.items():
    if name in saved and np.shape(saved[name]) == np.shape(value):
      own[name] = jnp.asarray(saved[name])
      loaded.append(name)
    elif name in saved and strict:
      raise ValueError(f"{path}: {name} has shape {np.shape(saved[name])}, this model "
                       f"{np.shape(value)}")
    else:
      kept.append(name)
  return _unflatten(own), {"loaded": loaded, "kept": kept}


def _flatten(tree, prefix: str = "") -> Sequence[tuple[str, Any]]:
  out = []
  for key, value in tree.items():
    path = f"{prefix}/{key}" if prefix else str(key)
    out += _flatten(value, path) if isinstance(value, dict) else [(path, value)]
  return out


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    *parents, leaf = path.split("/")
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree
