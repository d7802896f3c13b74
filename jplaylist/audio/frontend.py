"""Log-mel frontend in JAX: STFT, mel filterbank, log compression, SpecAugment.

Everything runs on device, batched and jit-able, on the waveform windows that
the input pipeline delivers (`audio: [B, num_samples]` float32).

Patent defaults (the "resnet" and "ast" presets): 16 kHz audio, 25 ms Hann
window (400 samples, zero-padded to a 512-point FFT), 10 ms hop (160
samples), 64 mel bands for the ResNet and 128 for AST, and 10-s windows of
400 frames.

How exactly 400 frames come out of a 10-s window: the STFT is taken at the
patent's 10 ms hop with the window centred on each hop (librosa's
`center=True`, zero padding), which gives 1 + 160000 // 160 = 1001 frames for
160,000 samples. Those 1001 frames of mel *power* are then averaged in time
onto 400 output frames, output frame j integrating the input time span
[j, j + 1) * 1001 / 400 frames with fractional weights at the edges (a fixed
[1001, 400] matrix, so it is a single matmul on device), before the log.
Each output frame therefore summarises 25 ms of audio (10 s / 400) drawn from
overlapping 25-ms Hann windows at a 10-ms hop: no audio between frames is
lost, as it would be with non-overlapping windows, and all three of the
patent's figures hold. Set `num_frames=None` for the native 10-ms frame rate.

Other presets cover the front-ends peers use, e.g. "musicnn96": 96 HTK mels,
n_fft 512, hop 256 at 16 kHz (native frame rate), and "ast_kaldi": the
normalised Kaldi filterbanks of AudioSet AST (`kaldi.py`), which the AST
configs use; "ast" is kept for runs made with it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jplaylist.audio import kaldi


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
  """Log-mel settings.

  Attributes:
    sample_rate: Hz of the input waveform.
    window_length: STFT window, samples (Hann).
    hop_length: STFT hop, samples.
    n_fft: FFT size (>= window_length; the window is zero-padded, centred).
    num_mels: mel bands.
    fmin, fmax: band edges of the filterbank, Hz (fmax None: Nyquist).
    htk: HTK mel formula instead of Slaney's.
    slaney_norm: area-normalise each triangle (librosa's norm="slaney").
    center: pad n_fft // 2 zeros at both ends so frame t is centred at t * hop.
    window_seconds: length of the waveform windows the towers see.
    num_frames: output frames per window after time averaging; None keeps
      the STFT's native frames.
    amin: power floor before the log (librosa's `amin`).
  """

  sample_rate: int = 16_000
  window_length: int = 400
  hop_length: int = 160
  n_fft: int = 512
  num_mels: int = 64
  fmin: float = 0.0
  fmax: float | None = None
  htk: bool = False
  slaney_norm: bool = True
  center: bool = True
  window_seconds: float = 10.0
  num_frames: int | None = 400
  amin: float = 1e-10

  @property
  def window_samples(self) -> int:
    return int(round(self.window_seconds * self.sample_rate))

  def native_frames(self, num_samples: int) -> int:
    """STFT frames for a waveform of `num_samples`."""
    if self.center:
      return 1 + num_samples // self.hop_length
    if num_samples < self.n_fft:
      return 1  # one zero-padded frame, so short inputs still give output
    return 1 + (num_samples - self.n_fft) // self.hop_length

  def output_frames(self, num_samples: int) -> int:
    return self.num_frames or self.native_frames(num_samples)


PRESETS = {
    "resnet": FrontendConfig(num_mels=64),
    "ast": FrontendConfig(num_mels=128),
    "musicnn96": FrontendConfig(window_length=512, hop_length=256, n_fft=512,
                                num_mels=96, htk=True, slaney_norm=False,
                                num_frames=None, window_seconds=3.0),
    # AudioSet AST's own input (kaldi.py): normalised Kaldi fbanks, 128 mels at
    # 10-ms frames, 1024 frames per 10-s window. The AST configs use it; "ast"
    # stays for runs and checkpoints made with it.
    "ast_kaldi": kaldi.KaldiConfig(),
}


def decode(name_or_config) -> FrontendConfig | kaldi.KaldiConfig:
  """A preset by name ("resnet", "ast", "ast_kaldi", "musicnn96"), or a config as given."""
  if isinstance(name_or_config, (FrontendConfig, kaldi.KaldiConfig)):
    return name_or_config
  if name_or_config not in PRESETS:
    raise ValueError(f"unknown frontend {name_or_config!r}; known: {', '.join(PRESETS)}")
  return PRESETS[name_or_config]


def hz_to_mel(hz, htk: bool):
  hz = np.asarray(hz, dtype=np.float64)
  if htk:
    return 2595.0 * np.log10(1.0 + hz / 700.0)
  # Slaney: linear below 1 kHz, logarithmic above.
  f_sp, min_log_hz = 200.0 / 3, 1000.0
  min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
  return np.where(hz >= min_log_hz,
                  min_log_mel + np.log(np.maximum(hz, 1e-12) / min_log_hz) / logstep,
                  hz / f_sp)


def mel_to_hz(mel, htk: bool):
  mel = np.asarray(mel, dtype=np.float64)
  if htk:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
  f_sp, min_log_hz = 200.0 / 3, 1000.0
  min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
  return np.where(mel >= min_log_mel,
                  min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@functools.lru_cache(maxsize=32)
def mel_filterbank(config: FrontendConfig) -> np.ndarray:
  """Triangular mel filters, [n_fft // 2 + 1, num_mels] float32."""
  fmax = config.fmax if config.fmax is not None else config.sample_rate / 2
  fft_hz = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
  mel_points = np.linspace(hz_to_mel(config.fmin, config.htk),
                           hz_to_mel(fmax, config.htk), config.num_mels + 2)
  edges_hz = mel_to_hz(mel_points, config.htk)
  widths = np.diff(edges_hz)
  distance = edges_hz[:, None] - fft_hz[None, :]
  lower = -distance[:-2] / widths[:-1, None]
  upper = distance[2:] / widths[1:, None]
  weights = np.maximum(0.0, np.minimum(lower, upper))
  if config.slaney_norm:
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
  return weights.T.astype(np.float32)


@functools.lru_cache(maxsize=32)
def _window(config: FrontendConfig) -> np.ndarray:
  """Periodic Hann of window_length, zero-padded to n_fft and centred."""
  n = np.arange(config.window_length)
  hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / config.window_length)
  left = (config.n_fft - config.window_length) // 2
  padded = np.zeros(config.n_fft)
  padded[left:left + config.window_length] = hann
  return padded.astype(np.float32)


@functools.lru_cache(maxsize=32)
def time_pooling(native: int, out: int) -> np.ndarray:
  """[native, out] averaging matrix: column j integrates [j, j + 1) * native / out."""
  edges = np.arange(out + 1) * (native / out)
  starts, stops = edges[:-1], edges[1:]
  frame = np.arange(native)[:, None]
  overlap = np.clip(np.minimum(frame + 1, stops[None]) - np.maximum(frame, starts[None]),
                    0.0, None)
  return (overlap / (stops - starts)[None]).astype(np.float32)


def power_spectrogram(audio: jax.Array, config: FrontendConfig) -> jax.Array:
  """|STFT|^2 of a batch of waveforms.

  Args:
    audio: [B, num_samples] float32.

  Returns:
    [B, native_frames, n_fft // 2 + 1] float32.
  """
  num_samples = audio.shape[-1]
  if config.center:
    pad = config.n_fft // 2
    audio = jnp.pad(audio, ((0, 0), (pad, pad)))
  elif num_samples < config.n_fft:
    audio = jnp.pad(audio, ((0, 0), (0, config.n_fft - num_samples)))
  num_frames = config.native_frames(num_samples)
  index = (np.arange(num_frames)[:, None] * config.hop_length
           + np.arange(config.n_fft)[None, :])
  frames = audio[:, index] * _window(config)
  spectrum = jnp.fft.rfft(frames, n=config.n_fft, axis=-1)
  return jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2


def log_mel(audio: jax.Array, config: FrontendConfig | kaldi.KaldiConfig | str = "resnet"
            ) -> jax.Array:
  """Log-mel spectrogram in dB (10 log10 of mel power, floored at `amin`).

  A KaldiConfig ("ast_kaldi") gives `kaldi.fbank` instead: normalised natural-log
  Kaldi filterbanks.

  Args:
    audio: [B, num_samples] float32 waveforms at `config.sample_rate`.
    config: a FrontendConfig, KaldiConfig or preset name.

  Returns:
    [B, output_frames, num_mels] float32, time first (frames x mels).
  """
  config = decode(config)
  if isinstance(config, kaldi.KaldiConfig):  # natural-log, normalised; see kaldi.py
    return kaldi.fbank(audio, config)
  audio = jnp.asarray(audio, jnp.float32)
  power = power_spectrogram(audio, config)
  mel = jnp.einsum("btf,fm->btm", power, mel_filterbank(config),
                   precision=jax.lax.Precision.HIGHEST)
  if config.num_frames is not None:
    pooling = time_pooling(mel.shape[1], config.num_frames)
    mel = jnp.einsum("btm,to->bom", mel, pooling, precision=jax.lax.Precision.HIGHEST)
  return 10.0 * jnp.log10(jnp.maximum(mel, config.amin))


@dataclasses.dataclass(frozen=True)
class SpecAugment:
  """Time and frequency masking (Park et al., 2019), for training only.

  Attributes:
    num_time_masks, max_time_width: masks along frames and their widest span.
    num_freq_masks, max_freq_width: masks along mel bands.
  """

  num_time_masks: int = 2
  max_time_width: int = 40
  num_freq_masks: int = 2
  max_freq_width: int = 8

  def __call__(self, spectrogram: jax.Array, rng: jax.Array) -> jax.Array:
    """Masks each example independently; masked cells take the example's mean.

    Args:
      spectrogram: [B, frames, mels].
      rng: a PRNG key; the same key gives the same masks.
    """
    batch, frames, mels = spectrogram.shape
    fill = jnp.mean(spectrogram, axis=(1, 2), keepdims=True)
    keep = jnp.ones((batch, frames, mels), bool)
    keys = jax.random.split(rng, self.num_time_masks + self.num_freq_masks)
    specs = ([(k, frames, self.max_time_width, 1) for k in keys[:self.num_time_masks]]
             + [(k, mels, self.max_freq_width, 2) for k in keys[self.num_time_masks:]])
    for key, size, max_width, axis in specs:
      width_key, start_key = jax.random.split(key)
      width = jax.random.randint(width_key, (batch,), 0, min(max_width, size) + 1)
      start = jax.random.randint(start_key, (batch,), 0, size - width + 1)
      position = jnp.arange(size)[None, :]
      masked = (position >= start[:, None]) & (position < (start + width)[:, None])
      keep &= ~(masked[:, :, None] if axis == 1 else masked[:, None, :])
    return jnp.where(keep, spectrogram, fill)
