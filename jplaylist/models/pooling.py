"""Pooling over time that counts only frames of real audio.

The input pipeline zero-pads clips shorter than the window at the end and says
how many samples are real in `audio_length` [B]; the model turns that into a
sample mask `audio_mask` [B, samples] (`two_tower.valid_samples`). Padding is silence at the
log-mel floor (-100 dB), and a plain mean over time lets it into the
embedding: a 3-s clip in a 10-s window is then 70% silence to the tower. Here:

  `frame_mask`          audio_mask -> [B, frames] at the log-mel frontend's
                        frame rate: a frame is valid when every sample that
                        enters it (every STFT window averaged into it) is
                        real audio, so a valid frame's value does not depend
                        on what the padding holds.
  `block_weights`       frame mask -> [B, T'] weights at a trunk's coarser
                        time resolution: the fraction of valid frames in each
                        trunk frame's stride block.
  `temporal_pool`       [B, T', F, C] trunk features and [B, T'] weights ->
                        [B, C] (mean), [B, 2C] (mean and std over time) or
                        [B, 2C] (mean and max over time); the statistics
                        branches keep how features move in time, which a mean
                        throws away (tempo, onsets, dynamics; x-vector style
                        statistics pooling, Snyder et al. 2018).

With a full mask the weights are all 1 and the pool is the plain mean.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jplaylist.audio import frontend as frontend_lib

POOLINGS = ("mean", "mean_std", "mean_max")
# Keeps the std's square root differentiable at zero variance.
_VARIANCE_EPS = 1e-6


@functools.lru_cache(maxsize=32)
def _native_windows(config: frontend_lib.FrontendConfig, num_samples: int):
  """[native] first and one-past-last sample of each STFT frame's Hann support,
  clipped to the waveform (the frontend's own centre padding is not audio)."""
  native = config.native_frames(num_samples)
  start = np.arange(native) * config.hop_length
  if config.center:
    start = start - config.n_fft // 2
  start = start + (config.n_fft - config.window_length) // 2
  stop = start + config.window_length
  return np.clip(start, 0, num_samples), np.clip(stop, 0, num_samples)


def frame_mask(audio_mask: jax.Array, config: frontend_lib.FrontendConfig | str
               ) -> jax.Array:
  """Which log-mel frames hold only real audio.

  Args:
    audio_mask: [B, samples] bool, True on real samples.
    config: the frontend (a FrontendConfig or preset name) the log-mel comes
      from; its framing decides which samples enter which frame.

  Returns:
    [B, output_frames] bool: frame j is True when every sample inside the Hann
    windows of the STFT frames averaged into it is real.
  """
  config = frontend_lib.decode(config)
  if audio_mask.ndim != 2:
    raise ValueError(f"audio_mask must be [B, samples], got shape {audio_mask.shape}")
  num_samples = audio_mask.shape[1]
  start, stop = _native_windows(config, num_samples)
  # Padded samples before each position; a window's count is a difference.
  padded = jnp.cumsum(~audio_mask.astype(bool), axis=1, dtype=jnp.int32)
  padded = jnp.pad(padded, ((0, 0), (1, 0)))
  native_bad = (padded[:, stop] - padded[:, start]) > 0
  if config.num_frames is None:
    return ~native_bad
  # Output frame j averages the native frames with non-zero pooling weight.
  support = frontend_lib.time_pooling(len(start), config.num_frames) > 0
  touched = jnp.einsum("bt,to->bo", native_bad.astype(jnp.float32),
                       support.astype(np.float32))
  return touched == 0


@functools.lru_cache(maxsize=32)
def _block_matrix(num_frames: int, num_blocks: int, stride: int) -> np.ndarray:
  """[num_frames, num_blocks]: column k averages frames [k * stride, (k + 1) * stride)."""
  frames = np.arange(num_frames)
  matrix = (frames[:, None] // stride == np.arange(num_blocks)[None, :]).astype(np.float32)
  return matrix / np.maximum(matrix.sum(axis=0, keepdims=True), 1.0)


def block_weights(frame_valid: jax.Array, num_blocks: int, stride: int) -> jax.Array:
  """Weights of a trunk's time steps from a frame mask.

  Args:
    frame_valid: [B, frames] bool (or float in [0, 1]).
    num_blocks: time steps of the trunk's output, ceil(frames / stride).
    stride: the trunk's total time stride (frames per time step).

  Returns:
    [B, num_blocks] float32: the fraction of valid frames in each block; a
    clip with no valid frame at all gets weight 1 everywhere (a plain mean
    rather than a division by zero).
  """
  num_frames = frame_valid.shape[1]
  if -(-num_frames // stride) != num_blocks:
    raise ValueError(f"{num_frames} frames at stride {stride} give "
                     f"{-(-num_frames // stride)} blocks, not {num_blocks}")
  weights = jnp.einsum("bt,tk->bk", frame_valid.astype(jnp.float32),
                       _block_matrix(num_frames, num_blocks, stride))
  empty = jnp.sum(weights, axis=1, keepdims=True) <= 0
  return jnp.where(empty, 1.0, weights)


def temporal_pool(features: jax.Array, weights: jax.Array | None,
                  mode: str = "mean") -> jax.Array:
  """Pools trunk features over time (weighted) and frequency.

  Args:
    features: [B, T, F, C] trunk output (time, frequency, channels).
    weights: [B, T] non-negative time weights (`block_weights`), or None for
      uniform weights (then "mean" is exactly today's mean over T and F).
    mode: "mean", "mean_std" or "mean_max" (see the module docstring). Std
      and max are taken over time of the frequency-averaged features.

  Returns:
    [B, C] for "mean", [B, 2C] otherwise; float32.
  """
  if mode not in POOLINGS:
    raise ValueError(f"unknown audio pooling {mode!r}; known: {', '.join(POOLINGS)}")
  features = features.astype(jnp.float32)
  if weights is None:
    if mode == "mean":
      return jnp.mean(features, axis=(1, 2))
    weights = jnp.ones(features.shape[:2], jnp.float32)
  over_time = jnp.mean(features, axis=2)                       # [B, T, C]
  weights = weights.astype(jnp.float32)[:, :, None]
  total = jnp.sum(weights, axis=1)                             # [B, 1]
  mean = jnp.sum(weights * over_time, axis=1) / total
  if mode == "mean":
    return mean
  if mode == "mean_std":
    variance = jnp.sum(weights * (over_time - mean[:, None]) ** 2, axis=1) / total
    return jnp.concatenate([mean, jnp.sqrt(variance + _VARIANCE_EPS)], axis=-1)
  floor = jnp.finfo(jnp.float32).min
  peak = jnp.max(jnp.where(weights > 0, over_time, floor), axis=1)
  return jnp.concatenate([mean, peak], axis=-1)
