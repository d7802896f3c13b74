"""Pitch-class (chroma) profiles of waveforms, on device.

Major and minor keys differ in which pitch classes sound most, relative to
the tonic: Krumhansl & Kessler's key profiles (1982) and the
Krumhansl-Schmuckler key-finding algorithm read the mode from the
time-averaged pitch-class distribution alone. The patent's log-mel frontend
cannot hold that distribution: its 25-ms window gives 40-Hz FFT bins, and its
64 mel bands are about 30 Hz wide below 500 Hz, while a semitone at 200 Hz is
12 Hz. So a convolutional tower trained on it stays at chance on mode
(BENCHMARKS.md, issue 10).

`pitch_class_profile` takes a long-window STFT (256 ms at 16 kHz: 3.9-Hz
bins, so semitones are resolved from about 70 Hz up), folds the power of
every bin between `fmin` and `fmax` onto the 12 pitch classes with Gaussian
weights in semitones around each class's centre, sums over time (loud frames
weigh more; zero padding adds nothing) and normalises the result to sum 1.
Pitch class 0 is C, 9 is A (A4 = 440 Hz).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

NUM_PITCH_CLASSES = 12


@dataclasses.dataclass(frozen=True)
class ChromaConfig:
  """Long-window STFT settings for pitch-class profiles.

  Attributes:
    sample_rate: Hz of the waveform.
    n_fft: STFT window and FFT size (Hann), samples.
    hop_length: samples between frames.
    fmin, fmax: the frequency range folded onto pitch classes, Hz.
    width: standard deviation of a bin's weight around a class centre, semitones.
  """
  sample_rate: int = 16_000
  n_fft: int = 4096
  hop_length: int = 1024
  fmin: float = 65.0
  fmax: float = 2_100.0
  width: float = 0.35


def pitch_of_hz(hz: np.ndarray) -> np.ndarray:
  """MIDI pitch (fractional) of frequencies: 69 at 440 Hz, 12 per octave."""
  return 69.0 + 12.0 * np.log2(np.asarray(hz, np.float64) / 440.0)


@functools.lru_cache(maxsize=8)
def chroma_filterbank(config: ChromaConfig) -> np.ndarray:
  """[n_fft // 2 + 1, 12] float32: each FFT bin's weight on each pitch class.

  A bin inside [fmin, fmax] spreads over the classes with Gaussian weights of
  its distance in semitones to each class (taken round the circle), which
  sum to 1; bins outside the range weigh 0.
  """
  hz = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
  inside = (hz >= config.fmin) & (hz <= config.fmax)
  pitch = pitch_of_hz(np.where(inside, hz, 440.0))
  classes = np.arange(NUM_PITCH_CLASSES)
  # Circular distance in semitones, in [-6, 6).
  distance = (pitch[:, None] - classes[None, :] + 6.0) % 12.0 - 6.0
  weights = np.exp(-0.5 * (distance / config.width) ** 2)
  weights /= weights.sum(axis=1, keepdims=True)
  return (weights * inside[:, None]).astype(np.float32)


def _hann(n: int) -> np.ndarray:
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def pitch_class_profile(audio: jax.Array, config: ChromaConfig = ChromaConfig()
                        ) -> jax.Array:
  """Time-summed pitch-class power of waveforms, normalised to sum 1.

  Args:
    audio: [B, samples] float waveforms (zero padding contributes nothing).
    config: STFT and folding settings.

  Returns:
    [B, 12] float32, each row summing to 1 (uniform for silence).
  """
  audio = jnp.asarray(audio, jnp.float32)
  num_samples = audio.shape[-1]
  if num_samples < config.n_fft:
    audio = jnp.pad(audio, ((0, 0), (0, config.n_fft - num_samples)))
    num_samples = config.n_fft
  num_frames = 1 + (num_samples - config.n_fft) // config.hop_length
  index = (np.arange(num_frames)[:, None] * config.hop_length
           + np.arange(config.n_fft)[None, :])
  frames = audio[:, index] * _hann(config.n_fft)
  power = jnp.abs(jnp.fft.rfft(frames, axis=-1)) ** 2          # [B, T, bins]
  per_class = jnp.einsum("btf,fc->bc", power, chroma_filterbank(config))
  total = jnp.sum(per_class, axis=-1, keepdims=True)
  uniform = jnp.full_like(per_class, 1.0 / NUM_PITCH_CLASSES)
  return jnp.where(total > 0, per_class / jnp.maximum(total, 1e-30), uniform)
