"""The two-tower model: an audio tower and a text tower sharing no weights.

Following the patent's MuLan model, the audio tower (M-ResNet-50 or AST) maps
a 10-s waveform window, through the on-device log-mel frontend, to an
L2-normalised 128-d embedding; the text tower (BERT, [CLS] output) maps a
tokenized text to the same space. The model also owns the learned softmax
temperature of the contrastive loss, parametrised so that it always lies in
(0, 1]:

  temperature = exp(-softplus(raw))

which is 1 only in the limit raw -> -inf and tends to 0 as raw grows; its
initial value is configurable.

Towers are chosen by name (`audio_tower="resnet" | "ast"`, variants by the
towers' own `decode_variant`), so a config picks everything:
`Model.from_config(config.model)`.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jplaylist.audio import frontend as frontend_lib
from jplaylist.models import ast as ast_lib
from jplaylist.models import bert as bert_lib
from jplaylist.models import pooling as pooling_lib
from jplaylist.models import resnet as resnet_lib

AUDIO_TOWERS = ("resnet", "ast")


def temperature_from_raw(raw: jax.Array) -> jax.Array:
  """exp(-softplus(raw)), in (0, 1]."""
  return jnp.exp(-jax.nn.softplus(raw))


def raw_from_temperature(temperature: float) -> float:
  """Inverse of `temperature_from_raw` for 0 < temperature < 1."""
  if not 0.0 < temperature < 1.0:
    raise ValueError(f"initial temperature must be in (0, 1), got {temperature}")
  return math.log(math.expm1(-math.log(temperature)))


class Model(nn.Module):
  """Audio tower + text tower + temperature.

  Attributes:
    audio_tower: "resnet" or "ast".
    audio_variant: e.g. "50", "18", "tiny" (resnet) or "base", "tiny" (ast).
    text_variant: "base", "minilm-l6" or "tiny".
    frontend: log-mel preset name ("resnet": 64 mels, "ast": 128 mels).
    embed_dim: joint dimension d.
    initial_temperature: temperature at initialisation, in (0, 1).
    text_dropout: dropout rate in the text tower (training only).
    train_text_encoder: False keeps the text encoder fixed (only its
      projection trains), e.g. a warm-started MiniLM on a small corpus.
    specaugment: time/frequency masking applied in training, or None.
    pool_valid_frames: given an `audio_mask`, the ResNet pools only over
      frames of real audio (AST reads its [CLS] token and ignores the mask).
    audio_pooling: the ResNet's pooling, "mean", "mean_std" or "mean_max".
    audio_onset_channel: the ResNet also reads the log-mel's per-band spectral
      flux as a second input channel (`resnet.onset_features`).
    text_pooling: "cls" or "mean" (over real tokens).
    train_text_layers: -1 trains the whole text encoder (when
      train_text_encoder); k trains only its top k layers.
    dtype: compute dtype of both towers; parameters stay float32.
  """

  audio_tower: str = "resnet"
  audio_variant: str = "50"
  text_variant: str = "base"
  frontend: str = "resnet"
  embed_dim: int = 128
  initial_temperature: float = 0.1
  text_dropout: float = 0.1
  train_text_encoder: bool = True
  specaugment: frontend_lib.SpecAugment | None = frontend_lib.SpecAugment()
  pool_valid_frames: bool = True
  audio_pooling: str = "mean"
  audio_onset_channel: bool = False
  text_pooling: str = "cls"
  train_text_layers: int = -1
  dtype: Any = jnp.float32

  def setup(self):
    config = frontend_lib.decode(self.frontend)
    if self.audio_tower == "resnet":
      self.audio = resnet_lib.Model(variant=self.audio_variant,
                                    embed_dim=self.embed_dim, pooling=self.audio_pooling,
                                    onset_channel=self.audio_onset_channel,
                                    dtype=self.dtype)
    elif self.audio_tower == "ast":
      if config.num_frames is None:
        raise ValueError("the AST tower needs a frontend with fixed num_frames")
      if self.audio_pooling != "mean" or self.audio_onset_channel:
        raise ValueError(f"audio_pooling={self.audio_pooling!r}, audio_onset_channel="
                         f"{self.audio_onset_channel} are ResNet options; the AST tower "
                         "reads its [CLS] token over log-mel patches")
      self.audio = ast_lib.Model(variant=self.audio_variant, embed_dim=self.embed_dim,
                                 num_mel_bins=config.num_mels,
                                 num_frames=config.num_frames, dtype=self.dtype)
    else:
      raise ValueError(f"unknown audio tower {self.audio_tower!r}; "
                       f"known: {', '.join(AUDIO_TOWERS)}")
    self.text = bert_lib.Model(variant=self.text_variant, embed_dim=self.embed_dim,
                               dropout_rate=self.text_dropout,
                               train_encoder=self.train_text_encoder,
                               pooling=self.text_pooling,
                               train_layers=self.train_text_layers, dtype=self.dtype)
    self.temperature_raw = self.param(
        "temperature_raw",
        lambda _: jnp.asarray(raw_from_temperature(self.initial_temperature),
                              jnp.float32))

  def log_mel(self, audio: jax.Array, *, train: bool = False) -> jax.Array:
    """Waveforms [B, samples] -> log-mel [B, frames, mels] (SpecAugment in training)."""
    spectrogram = frontend_lib.log_mel(audio, self.frontend)
    if train and self.specaugment is not None:
      spectrogram = self.specaugment(spectrogram, self.make_rng("specaugment"))
    return spectrogram

  def embed_audio(self, audio: jax.Array, audio_mask: jax.Array | None = None, *,
                  train: bool = False) -> jax.Array:
    """Embeds waveforms.

    Args:
      audio: [B, samples] float32 waveforms.
      audio_mask: [B, samples] bool, False on padding, or None (all real).
      train: SpecAugment, dropout and BatchNorm batch statistics.

    Returns:
      [B, embed_dim], unit norm.
    """
    log_mel = self.log_mel(audio, train=train)
    if self.audio_tower == "resnet" and self.pool_valid_frames and audio_mask is not None:
      frame_mask = pooling_lib.frame_mask(audio_mask, self.frontend)
      return self.audio(log_mel, frame_mask=frame_mask, train=train)
    return self.audio(log_mel, train=train)

  def embed_text(self, text_ids: jax.Array, text_mask: jax.Array, *,
                 train: bool = False) -> jax.Array:
    """[B, L] token ids and mask -> [B, embed_dim], unit norm."""
    return self.text(text_ids, text_mask, train=train)

  def temperature(self) -> jax.Array:
    return temperature_from_raw(self.temperature_raw)

  def __call__(self, audio, text_ids, text_mask, audio_mask=None, *, train: bool = False):
    """Returns (audio embeddings [B, d], text embeddings [B, d], temperature [])."""
    return (self.embed_audio(audio, audio_mask, train=train),
            self.embed_text(text_ids, text_mask, train=train),
            self.temperature())

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, **overrides) -> "Model":
    """Builds the model from a `config.model` ConfigDict (see configs/common.py)."""
    fields = dict(config)
    specaugment = fields.pop("specaugment", None)
    if specaugment is not None and not isinstance(specaugment, frontend_lib.SpecAugment):
      specaugment = frontend_lib.SpecAugment(**dict(specaugment))
    return cls(specaugment=specaugment, **fields, **overrides)


def build(config: ml_collections.ConfigDict) -> Model:
  """The model of a whole experiment config: `config.model` at `config.compute_dtype`."""
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.get("compute_dtype", "float32")]
  return Model.from_config(config.model, dtype=dtype)


def frozen_patterns(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Regexes of the parameters of a `config.model` that never train."""
  return bert_lib.frozen_patterns(
      config.text_variant, train_encoder=config.get("train_text_encoder", True),
      train_layers=config.get("train_text_layers", -1), prefix="text/")


def init(model: Model, rng: jax.Array, *, batch_size: int = 1, num_samples: int | None = None,
         text_length: int = 16):
  """Initialises all variables with dummy inputs of the right shapes."""
  config = frontend_lib.decode(model.frontend)
  num_samples = num_samples or config.window_samples
  audio = jnp.zeros((batch_size, num_samples), jnp.float32)
  ids = jnp.zeros((batch_size, text_length), jnp.int32)
  return model.init({"params": rng}, audio, ids, jnp.ones_like(ids), train=False)
