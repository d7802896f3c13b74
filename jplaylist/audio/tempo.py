"""Periodicity of note onsets: autocorrelation of a log-mel's onset envelope.

Tempo is the period of the beat, up to seconds long; a ResNet over 10-s
log-mels with a few-frame receptive field sees onsets but not how they
repeat, and stays far from the tempo targets even with a spectral-flux input
channel (BENCHMARKS.md, issue 10). Classic tempo estimators (Scheirer 1998;
librosa's `tempo`) read the autocorrelation of an onset-strength envelope:
its peaks sit at the beat period and its multiples.

`onset_autocorrelation` does that on device: the envelope is the log-mel's
spectral flux (`max(x[t] - x[t-1], 0)`) averaged over bands, taken only over
valid frames and centred; its autocorrelation at each lag is averaged over
the valid frame pairs and divided by the lag-0 value, so it lies in [-1, 1]
whatever the level. It is computed at every lag up to the longest by FFT,
then each of `num_bands` log-spaced lag bands keeps its maximum
(`lag_bands`): tempo is heard on a ratio scale, and a band's maximum does not
miss a beat period that falls between two sampled lags.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=16)
def lag_bands(frame_seconds: float, num_bands: int = 24, min_seconds: float = 0.2,
              max_seconds: float = 3.0) -> tuple[tuple[int, int], ...]:
  """[first, last] lags in frames of log-spaced bands from min_ to max_seconds.

  Bands are contiguous and cover every lag in the range; where they would be
  narrower than one frame, neighbouring edges merge.
  """
  edges = np.geomspace(min_seconds / frame_seconds, max_seconds / frame_seconds,
                       num_bands + 1)
  edges = np.unique(np.maximum(1, np.round(edges)).astype(int))
  return tuple((int(a), int(b) - 1 if i < len(edges) - 2 else int(b))
               for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])))


def onset_envelope(log_mel: jax.Array, frame_valid: jax.Array | None = None) -> jax.Array:
  """Band-averaged spectral flux, 0 where a frame or its predecessor is padding.

  Args:
    log_mel: [B, frames, mels].
    frame_valid: [B, frames] bool, or None (all valid).

  Returns:
    [B, frames] float32 (0 at frame 0).
  """
  x = log_mel.astype(jnp.float32)
  flux = jnp.maximum(x[:, 1:] - x[:, :-1], 0.0).mean(-1)
  flux = jnp.pad(flux, ((0, 0), (1, 0)))
  if frame_valid is None:
    return flux
  pair_valid = frame_valid & jnp.pad(frame_valid[:, :-1], ((0, 0), (1, 0)))
  return jnp.where(pair_valid, flux, 0.0)


def _lagged_sums(x: jax.Array, y: jax.Array, max_lag: int) -> jax.Array:
  """[B, max_lag + 1]: sum_t x[t] y[t + lag] for lag = 0..max_lag, by FFT."""
  size = 1 << int(np.ceil(np.log2(2 * x.shape[1])))
  spectrum = jnp.conj(jnp.fft.rfft(x, size)) * jnp.fft.rfft(y, size)
  return jnp.fft.irfft(spectrum, size)[:, :max_lag + 1]


def onset_autocorrelation(log_mel: jax.Array, bands: tuple[tuple[int, int], ...],
                          frame_valid: jax.Array | None = None) -> jax.Array:
  """Normalised autocorrelation of the onset envelope, maximum per lag band.

  Args:
    log_mel: [B, frames, mels].
    bands: (first, last) lags in frames, inclusive (`lag_bands`); last < frames.
    frame_valid: [B, frames] bool, or None (all valid).

  Returns:
    [B, len(bands)] float32 in [-1, 1] (0 for a clip without onsets).
  """
  num_frames = log_mel.shape[1]
  max_lag = max(last for _, last in bands)
  if max_lag >= num_frames:
    raise ValueError(f"lag {max_lag} needs more than the {num_frames} frames given")
  valid = (jnp.ones(log_mel.shape[:2], bool) if frame_valid is None
           else frame_valid.astype(bool))
  valid = valid & jnp.pad(valid[:, :-1], ((0, 0), (1, 0)))  # pairs of real frames
  envelope = onset_envelope(log_mel, frame_valid)
  weight = valid.astype(jnp.float32)
  count = jnp.maximum(weight.sum(1, keepdims=True), 1.0)
  envelope = (envelope - (envelope * weight).sum(1, keepdims=True) / count) * weight

  # Mean product over the valid pairs at each lag (pair counts by the same FFT).
  pairs = jnp.round(_lagged_sums(weight, weight, max_lag))
  acf = _lagged_sums(envelope, envelope, max_lag) / jnp.maximum(pairs, 1.0)
  energy = acf[:, :1]
  acf = jnp.where(energy > 0, acf / jnp.maximum(energy, 1e-12), 0.0)
  return jnp.stack([acf[:, first:last + 1].max(1) for first, last in bands], axis=1)
