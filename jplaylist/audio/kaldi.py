"""Kaldi filterbanks in JAX: the input AudioSet-trained AST checkpoints expect.

AST (Gong et al., 2021) and its Hugging Face checkpoints were trained on
`torchaudio.compliance.kaldi.fbank` features, which `transformers.ASTFeatureExtractor`
computes as follows (and which `fbank` here computes on device, batched and
jit-able, on the pipeline's waveform windows `audio: [B, num_samples]`):

  frames of 25 ms (400 samples) every 10 ms (160 samples), Kaldi's
    `snip_edges=True`: 1 + (num_samples - 400) // 160 frames, no padding;
  per frame: remove the DC offset, pre-emphasis 0.97 (the first sample is
    scaled by 1 - 0.97), a symmetric Hann window ("hanning"), zero-padding to
    a 512-point FFT, power spectrum; dither 0;
  128 triangular mel filters on Kaldi's mel scale (1127 ln(1 + f / 700)),
    triangles in mel space from 20 Hz to Nyquist, not area-normalised, over
    the FFT's first 256 bins (the Nyquist bin gets no weight);
  natural log, floored at float32 epsilon; no energy term;
  pad (with 0, before normalising) or truncate to `num_frames` frames (HF's
    `max_length`, 1024 for AudioSet AST);
  normalise with the AudioSet statistics: (fbank - mean) / (2 * std), which
    gives roughly N(0, 0.5) on AudioSet.

The Slaney-dB front-end of `frontend.py` ("ast" preset) differs in all of
these; an imported AudioSet AST reads its features as far out of distribution.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

# torch.finfo(torch.float32).eps: torchaudio's floor before the log.
FLOAT32_EPS = float(np.finfo(np.float32).eps)
# ASTFeatureExtractor's defaults: the AudioSet training set's fbank statistics.
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
WINDOW_TYPES = ("hanning", "povey", "hamming", "rectangular")


@dataclasses.dataclass(frozen=True)
class KaldiConfig:
  """Kaldi fbank settings (torchaudio.compliance.kaldi.fbank names in brackets).

  Attributes:
    sample_rate: Hz of the input waveform [sample_frequency].
    window_length: frame length, samples [frame_length 25 ms].
    hop_length: frame shift, samples [frame_shift 10 ms].
    n_fft: FFT size; Kaldi rounds the frame length up to a power of two.
    num_mels: mel filters [num_mel_bins].
    fmin, fmax: filterbank edges, Hz [low_freq, high_freq]; fmax None: Nyquist.
    window_type: "hanning" (AST's choice; symmetric Hann), "povey" (Kaldi's
      default, Hann ** 0.85), "hamming" or "rectangular".
    preemphasis: coefficient [preemphasis_coefficient]; 0 disables it.
    remove_dc_offset: subtract each frame's mean before pre-emphasis.
    floor: mel energies are floored here before the log.
    mean, std: normalisation (fbank - mean) / (2 * std) as AST's extractor
      does; None skips it.
    window_seconds: length of the waveform windows the towers see.
    num_frames: frames out, padded with 0 (before normalising, as HF does) or
      truncated; None keeps the native `1 + (num_samples - window_length) //
      hop_length`. 1024 reproduces AudioSet AST: a 10-s window gives 998
      frames and 26 frames of padding, and the 12 x 101 patch grid is the
      checkpoints' own, so their positions import without resizing.
  """

  sample_rate: int = 16_000
  window_length: int = 400
  hop_length: int = 160
  n_fft: int = 512
  num_mels: int = 128
  fmin: float = 20.0
  fmax: float | None = None
  window_type: str = "hanning"
  preemphasis: float = 0.97
  remove_dc_offset: bool = True
  floor: float = FLOAT32_EPS
  mean: float | None = AUDIOSET_MEAN
  std: float | None = AUDIOSET_STD
  window_seconds: float = 10.0
  num_frames: int | None = 1024

  def __post_init__(self):
    if self.window_type not in WINDOW_TYPES:
      raise ValueError(f"unknown Kaldi window_type {self.window_type!r}; "
                       f"known: {', '.join(WINDOW_TYPES)}")
    if self.n_fft < self.window_length:
      raise ValueError(f"n_fft {self.n_fft} < window_length {self.window_length}")
    if (self.mean is None) != (self.std is None):
      raise ValueError("set both mean and std, or neither")

  @property
  def window_samples(self) -> int:
    return int(round(self.window_seconds * self.sample_rate))

  def native_frames(self, num_samples: int) -> int:
    """Frames of a waveform of `num_samples` (Kaldi's snip_edges=True)."""
    if num_samples < self.window_length:
      raise ValueError(f"a Kaldi fbank needs at least {self.window_length} samples, "
                       f"got {num_samples}")
    return 1 + (num_samples - self.window_length) // self.hop_length

  def output_frames(self, num_samples: int) -> int:
    return self.num_frames or self.native_frames(num_samples)


def mel_scale(hz):
  """Kaldi's (and HTK's natural-log) mel scale, 1127 ln(1 + f / 700)."""
  return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


@functools.lru_cache(maxsize=32)
def mel_filterbank(config: KaldiConfig) -> np.ndarray:
  """Kaldi's triangular filters, [n_fft // 2 + 1, num_mels] float32.

  Triangles are linear in mel (not in Hz), their edges equally spaced in mel
  between fmin and fmax; the Nyquist bin's row is zero, as in torchaudio.
  """
  fmax = config.fmax if config.fmax is not None else config.sample_rate / 2
  if fmax <= 0.0:  # Kaldi's convention: a negative high_freq counts from Nyquist.
    fmax += config.sample_rate / 2
  mel_low, mel_high = mel_scale(config.fmin), mel_scale(fmax)
  delta = (mel_high - mel_low) / (config.num_mels + 1)
  left = mel_low + delta * np.arange(config.num_mels)[None, :]
  center, right = left + delta, left + 2.0 * delta
  bin_hz = np.arange(config.n_fft // 2) * (config.sample_rate / config.n_fft)
  mel = mel_scale(bin_hz)[:, None]
  weights = np.maximum(0.0, np.minimum((mel - left) / (center - left),
                                       (right - mel) / (right - center)))
  nyquist_row = np.zeros((1, config.num_mels))
  return np.concatenate([weights, nyquist_row]).astype(np.float32)


@functools.lru_cache(maxsize=32)
def window(config: KaldiConfig) -> np.ndarray:
  """[window_length] float32 analysis window (symmetric, as Kaldi's)."""
  n = np.arange(config.window_length)
  hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / (config.window_length - 1))
  if config.window_type == "hanning":
    values = hann
  elif config.window_type == "povey":
    values = hann ** 0.85
  elif config.window_type == "hamming":
    values = 0.54 - 0.46 * np.cos(2.0 * np.pi * n / (config.window_length - 1))
  else:
    values = np.ones(config.window_length)
  return values.astype(np.float32)


def power_spectrum(audio: jax.Array, config: KaldiConfig) -> jax.Array:
  """Kaldi's framed, DC-removed, pre-emphasised, windowed power spectrum.

  Args:
    audio: [B, num_samples] float32.

  Returns:
    [B, native_frames, n_fft // 2 + 1] float32.
  """
  num_frames = config.native_frames(audio.shape[-1])
  index = (np.arange(num_frames)[:, None] * config.hop_length
           + np.arange(config.window_length)[None, :])
  frames = audio[:, index]
  if config.remove_dc_offset:
    frames = frames - jnp.mean(frames, axis=-1, keepdims=True)
  if config.preemphasis:
    # Kaldi's pre-emphasis treats the sample before the frame as the first one.
    previous = jnp.concatenate([frames[..., :1], frames[..., :-1]], axis=-1)
    frames = frames - config.preemphasis * previous
  frames = frames * window(config)
  spectrum = jnp.fft.rfft(frames, n=config.n_fft, axis=-1)  # zero-pads on the right
  return jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2


def fbank(audio: jax.Array, config: KaldiConfig | None = None) -> jax.Array:
  """Normalised Kaldi log-mel filterbanks, as ASTFeatureExtractor gives them.

  Args:
    audio: [B, num_samples] waveforms at `config.sample_rate`, full scale 1.0
      (what torchaudio.load gives; AST's statistics are for this scale).
    config: a KaldiConfig (default: AudioSet AST's).

  Returns:
    [B, output_frames, num_mels] float32, time first (HF's `input_values`).
  """
  config = config or KaldiConfig()
  audio = jnp.asarray(audio, jnp.float32)
  power = power_spectrum(audio, config)
  # HIGHEST: on GPUs and TPUs the default matmul precision rounds inputs to
  # bf16/tf32, far coarser than the tolerance this front-end is tested to.
  mel = jnp.einsum("btf,fm->btm", power, mel_filterbank(config),
                   precision=jax.lax.Precision.HIGHEST)
  log_mel = jnp.log(jnp.maximum(mel, config.floor))
  if config.num_frames is not None:
    native = log_mel.shape[1]
    if native >= config.num_frames:
      log_mel = log_mel[:, :config.num_frames]
    else:
      log_mel = jnp.pad(log_mel, ((0, 0), (0, config.num_frames - native), (0, 0)))
  if config.mean is not None:
    log_mel = (log_mel - config.mean) / (2.0 * config.std)
  return log_mel
