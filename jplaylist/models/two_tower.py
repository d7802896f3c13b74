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

Waveforms arrive as the pipeline ships them, int16 with per-example lengths
(`audio_length`), and become float32 on the device (`waveform_to_float`);
float waveforms (inference) pass through unchanged. Each tower can be
rematerialised (`audio_remat`, `text_remat`): its activations are recomputed
in the backward pass instead of being kept from the forward one.

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

from jplaylist.audio import chroma as chroma_lib
from jplaylist.audio import frontend as frontend_lib
from jplaylist.audio import tempo as tempo_lib
from jplaylist.models import ast as ast_lib
from jplaylist.models import bert as bert_lib
from jplaylist.models import key_profile as key_profile_lib
from jplaylist.models import pooling as pooling_lib
from jplaylist.models import resnet as resnet_lib

AUDIO_TOWERS = ("resnet", "ast")
# int16 full scale, as audio_io.int16_to_float: a power of two, so the scaling
# is exact and int16 on the device equals float32 made on the host.
_INT16_SCALE = 1.0 / 32768.0


def waveform_to_float(audio: jax.Array) -> jax.Array:
  """Waveforms as float32 at full scale 1.0.

  Args:
    audio: [B, samples] int16 (stored samples, full scale 32768) or floating.

  Returns:
    [B, samples] float32; int16 is scaled by 1 / 32768, floats are cast.
  """
  if audio.dtype == jnp.int16:
    return audio.astype(jnp.float32) * jnp.float32(_INT16_SCALE)
  if not jnp.issubdtype(audio.dtype, jnp.floating):
    raise ValueError(f"audio must be int16 or floating, got {audio.dtype}")
  return audio.astype(jnp.float32)


def valid_samples(audio_length: jax.Array, num_samples: int) -> jax.Array:
  """Which samples are real audio.

  Args:
    audio_length: [B] int, real samples at the start of each row (the
      pipeline's `audio_length`); or a [B, num_samples] bool mask, which is
      returned as it is (callers that pad elsewhere than at the end).
    num_samples: samples per row.

  Returns:
    [B, num_samples] bool, True on real samples; built on the device, so only
    the [B] lengths cross from the host.
  """
  if audio_length.ndim == 2:
    return audio_length.astype(bool)
  if audio_length.ndim != 1:
    raise ValueError(f"audio_length must be [B] lengths or a [B, samples] mask, got "
                     f"shape {audio_length.shape}")
  return jnp.arange(num_samples, dtype=jnp.int32)[None, :] < audio_length[:, None]


def _audio_forward(model: "Model", audio, audio_length, train: bool):
  """Waveforms -> audio embeddings: the log-mel (SpecAugment in training),
  the valid-frame mask from `audio_length`, the ResNet's clip-level side
  features when configured, then the tower."""
  if model.audio_tower != "resnet":
    return model.audio(model.log_mel(audio, train=train), train=train)
  waveform = waveform_to_float(audio)
  clean = frontend_lib.log_mel(waveform, model.frontend)
  log_mel = clean
  if train and model.specaugment is not None:
    log_mel = model.specaugment(clean, model.make_rng("specaugment"))
  valid = None if audio_length is None else valid_samples(audio_length, audio.shape[1])
  frame_valid = None if valid is None else pooling_lib.frame_mask(valid, model.frontend)
  side = []
  if model.audio_key_profiles:
    real = waveform if valid is None else jnp.where(valid, waveform, 0.0)
    sample_rate = frontend_lib.decode(model.frontend).sample_rate
    side.append(model.key_profiles(chroma_lib.pitch_class_profile(
        real, chroma_lib.ChromaConfig(sample_rate=sample_rate))))
  if model.audio_tempo_bands:
    # From the log-mel before SpecAugment: its masks would read as onsets.
    side.append(tempo_lib.onset_autocorrelation(clean, model.tempo_bands(), frame_valid))
  return model.audio(log_mel, frame_mask=frame_valid if model.pool_valid_frames else None,
                     side_features=jnp.concatenate(side, -1) if side else None, train=train)


def _text_forward(model: "Model", text_ids, text_mask, train: bool):
  return model.text(text_ids, text_mask, train=train)


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
    pool_valid_frames: given `audio_length`, the ResNet pools only over
      frames of real audio (AST reads its [CLS] token and ignores it).
    audio_pooling: the ResNet's pooling, "mean", "mean_std" or "mean_max".
    audio_onset_channel: the ResNet also reads the log-mel's per-band spectral
      flux as a second input channel (`resnet.onset_features`).
    text_pooling: "cls" or "mean" (over real tokens).
    train_text_layers: -1 trains the whole text encoder (when
      train_text_encoder); k trains only its top k layers.
    dtype: compute dtype of both towers; parameters stay float32.
    audio_key_profiles: k > 0 joins k learned, transposition-invariant key-
      profile scores of the clip's pitch classes (`jplaylist.audio.chroma`,
      `jplaylist.models.key_profile`) to the ResNet's pooled features: the
      mode a log-mel at 25-ms windows cannot resolve.
    audio_tempo_bands: k > 0 joins the onset envelope's autocorrelation in k
      log-spaced lag bands from 0.2 to 3 s (`jplaylist.audio.tempo`) to the
      ResNet's pooled features: the beat period a few-frame receptive field
      does not see.
    audio_remat: rematerialise the audio tower layer by layer (each ResNet
      residual block, each AST transformer block, `nn.remat` under its own
      name): the backward pass keeps only the layers' inputs and recomputes
      one layer's inside at a time, for one more forward pass of the tower.
      Values and the parameter tree are unchanged; bench/remat.py measures
      the memory saved. The frontend is not wrapped: no parameter lies
      below it, so its intermediates are never kept for a backward pass.
    text_remat: the same for the text tower's (trained) BERT layers.
    text_teacher: the text tower keeps a frozen copy of its trained top
      layers as they started (`bert.Model.teacher`) and sows their sentence
      embedding for the loss's `text_distill_weight`.
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
  audio_key_profiles: int = 0
  audio_tempo_bands: int = 0
  audio_remat: bool = False
  text_remat: bool = False
  text_teacher: bool = False

  def setup(self):
    config = frontend_lib.decode(self.frontend)
    if self.audio_tower == "resnet":
      self.audio = resnet_lib.Model(variant=self.audio_variant,
                                    embed_dim=self.embed_dim, pooling=self.audio_pooling,
                                    onset_channel=self.audio_onset_channel,
                                    dtype=self.dtype, remat=self.audio_remat)
    elif self.audio_tower == "ast":
      if config.num_frames is None:
        raise ValueError("the AST tower needs a frontend with fixed num_frames")
      resnet_only = {"audio_pooling": self.audio_pooling != "mean",
                     "audio_onset_channel": self.audio_onset_channel,
                     "audio_key_profiles": self.audio_key_profiles,
                     "audio_tempo_bands": self.audio_tempo_bands}
      if any(resnet_only.values()):
        raise ValueError(f"{', '.join(k for k, v in resnet_only.items() if v)} are ResNet "
                         "options; the AST tower reads its [CLS] token over log-mel patches")
      self.audio = ast_lib.Model(variant=self.audio_variant, embed_dim=self.embed_dim,
                                 num_mel_bins=config.num_mels,
                                 num_frames=config.num_frames, dtype=self.dtype,
                                 remat=self.audio_remat)
    else:
      raise ValueError(f"unknown audio tower {self.audio_tower!r}; "
                       f"known: {', '.join(AUDIO_TOWERS)}")
    if self.audio_key_profiles:
      self.key_profiles = key_profile_lib.KeyProfiles(self.audio_key_profiles)
    self.text = bert_lib.Model(variant=self.text_variant, embed_dim=self.embed_dim,
                               dropout_rate=self.text_dropout,
                               train_encoder=self.train_text_encoder,
                               pooling=self.text_pooling,
                               train_layers=self.train_text_layers, dtype=self.dtype,
                               remat=self.text_remat, teacher=self.text_teacher)
    self.temperature_raw = self.param(
        "temperature_raw",
        lambda _: jnp.asarray(raw_from_temperature(self.initial_temperature),
                              jnp.float32))

  def tempo_bands(self) -> tuple[tuple[int, int], ...]:
    """The onset autocorrelation's lag bands, in the log-mel's frames."""
    config = frontend_lib.decode(self.frontend)
    frame_seconds = config.window_seconds / config.output_frames(config.window_samples)
    return tempo_lib.lag_bands(frame_seconds, self.audio_tempo_bands)

  def log_mel(self, audio: jax.Array, *, train: bool = False) -> jax.Array:
    """Waveforms [B, samples] (int16 or float) -> log-mel [B, frames, mels]
    (SpecAugment in training)."""
    spectrogram = frontend_lib.log_mel(waveform_to_float(audio), self.frontend)
    if train and self.specaugment is not None:
      spectrogram = self.specaugment(spectrogram, self.make_rng("specaugment"))
    return spectrogram

  def embed_audio(self, audio: jax.Array, audio_length: jax.Array | None = None, *,
                  train: bool = False) -> jax.Array:
    """Embeds waveforms.

    Args:
      audio: [B, samples] int16 (the pipeline's stored samples) or float
        waveforms at full scale 1.0; the dtype decides.
      audio_length: [B] int, real samples at the start of each row (the
        rest is padding); or a [B, samples] bool mask, True on real samples;
        or None (all real).
      train: SpecAugment, dropout and BatchNorm batch statistics.

    Returns:
      [B, embed_dim], unit norm.
    """
    return _audio_forward(self, audio, audio_length, train)

  def embed_text(self, text_ids: jax.Array, text_mask: jax.Array, *,
                 train: bool = False) -> jax.Array:
    """[B, L] token ids and mask -> [B, embed_dim], unit norm."""
    return _text_forward(self, text_ids, text_mask, train)

  def temperature(self) -> jax.Array:
    return temperature_from_raw(self.temperature_raw)

  def __call__(self, audio, text_ids, text_mask, audio_length=None, *, train: bool = False):
    """Returns (audio embeddings [B, d], text embeddings [B, d], temperature []).

    `audio` and `audio_length` as `embed_audio` takes them.
    """
    return (self.embed_audio(audio, audio_length, train=train),
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
      train_layers=config.get("train_text_layers", -1), prefix="text/",
      teacher=config.get("text_teacher", False))


def init(model: Model, rng: jax.Array, *, batch_size: int = 1, num_samples: int | None = None,
         text_length: int = 16):
  """Initialises all variables with dummy inputs of the right shapes."""
  config = frontend_lib.decode(model.frontend)
  num_samples = num_samples or config.window_samples
  audio = jnp.zeros((batch_size, num_samples), jnp.float32)
  ids = jnp.zeros((batch_size, text_length), jnp.int32)
  return model.init({"params": rng}, audio, ids, jnp.ones_like(ids), train=False)
