"""M-ResNet: the patent's ResNet-50 audio tower over log-mel spectrograms.

A standard ResNet (He et al., 2016; bottleneck blocks for 50, basic blocks for
18) that treats the log-mel spectrogram as a one-channel image of frames x
mels, with one change the patent makes: the first 7x7 convolution has stride
1 instead of 2, so the low-resolution mel axis (64 bands) is not halved
before the first block. The 3x3/2 max-pool after it is kept. The trunk's
output is mean-pooled over time and mel, projected by a linear layer to the
joint dimension (128) and L2-normalised.

Given a frame mask (which log-mel frames hold real audio, from the pipeline's
`audio_length` via `pooling.frame_mask`), the mean runs over the valid time
steps only, so end padding does not dilute short clips; `pooling` can add a
statistics branch (std or max over time) to the pooled features.

`onset_channel` (off by default, not in the patent) feeds the trunk a second
input channel beside the log-mel: its half-wave rectified difference over
time (per-band spectral flux, `onset_features`), where note onsets stand out,
so the rate of onsets (tempo) is one convolution away rather than learned
from level changes.

`remat` rematerialises each residual block (`nn.remat` around the block
class, under the block's own name, so the parameter tree is unchanged): the
backward pass keeps only the blocks' inputs and recomputes the inside of one
block at a time, for about one more forward pass of the trunk.

BatchNorm keeps running statistics in the `batch_stats` collection. Under
`jax.jit` with the batch sharded over a mesh, the batch statistics are
computed over the global batch (the compiler inserts the cross-device
reductions), which is what synchronous BatchNorm across devices means; under
`shard_map` set `axis_name` to the mesh's data axis for the same effect.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jplaylist.models import pooling as pooling_lib

# Frames per trunk time step: the 3x3/2 max-pool and the stride-2 first blocks
# of stages 2-4 (every variant has four stages).
TIME_STRIDE = 16


@dataclasses.dataclass(frozen=True)
class Variant:
  stage_sizes: tuple[int, ...]
  bottleneck: bool
  width: int = 64            # channels of the stem and the first stage
  stem_kernel: int = 7


VARIANTS = {
    "50": Variant((3, 4, 6, 3), bottleneck=True),
    "18": Variant((2, 2, 2, 2), bottleneck=False),
    # For tests and the CPU demo: same topology as 18, one block per stage,
    # a quarter of the width.
    "tiny": Variant((1, 1, 1, 1), bottleneck=False, width=16, stem_kernel=3),
}


def decode_variant(name: str) -> Variant:
  """"50", "18" or "tiny" (also accepts "resnet50" style names)."""
  key = str(name).lower().removeprefix("resnet").removeprefix("-")
  if key not in VARIANTS:
    raise ValueError(f"unknown ResNet variant {name!r}; known: {', '.join(VARIANTS)}")
  return VARIANTS[key]


def _conv(filters: int, kernel: int, strides: int, name: str, *, dtype) -> nn.Conv:
  """A bias-free square convolution with 'same'-style padding."""
  return nn.Conv(filters, (kernel, kernel), (strides, strides),
                 padding=[(kernel // 2, kernel // 2)] * 2, use_bias=False, dtype=dtype,
                 name=name)


class BasicBlock(nn.Module):
  filters: int
  strides: int
  norm: Any
  dtype: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_conv, dtype=self.dtype)
    residual = x
    y = nn.relu(self.norm(name="bn1")(conv(self.filters, 3, self.strides, "conv1")(x)))
    # Zero-initialised last scale: each block starts as the identity (Goyal et al.).
    y = self.norm(name="bn2", scale_init=nn.initializers.zeros)(
        conv(self.filters, 3, 1, "conv2")(y))
    if residual.shape != y.shape:
      residual = self.norm(name="proj_bn")(conv(self.filters, 1, self.strides, "proj")(x))
    return nn.relu(residual + y)


class BottleneckBlock(nn.Module):
  filters: int
  strides: int
  norm: Any
  dtype: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_conv, dtype=self.dtype)
    residual = x
    y = nn.relu(self.norm(name="bn1")(conv(self.filters, 1, 1, "conv1")(x)))
    # Stride on the 3x3 (torchvision's "ResNet v1.5").
    y = nn.relu(self.norm(name="bn2")(conv(self.filters, 3, self.strides, "conv2")(y)))
    y = self.norm(name="bn3", scale_init=nn.initializers.zeros)(
        conv(self.filters * 4, 1, 1, "conv3")(y))
    if residual.shape != y.shape:
      residual = self.norm(name="proj_bn")(
          conv(self.filters * 4, 1, self.strides, "proj")(x))
    return nn.relu(residual + y)


def onset_features(log_mel: jax.Array) -> jax.Array:
  """Per-band spectral flux: max(x[t] - x[t - 1], 0) over frames, 0 at t = 0.

  Args:
    log_mel: [..., frames, mels].

  Returns:
    [..., frames, mels], the same dtype.
  """
  rise = jnp.diff(log_mel, axis=-2)
  zeros = jnp.zeros_like(log_mel[..., :1, :])
  return jnp.concatenate([zeros, jnp.maximum(rise, 0)], axis=-2)


class ResNetTrunk(nn.Module):
  """The convolutional trunk: [B, frames, mels] -> [B, frames', mels', C].

  onset_channel: a second input channel of `onset_features(log_mel)`.
  remat: recompute each residual block's activations in the backward pass.
  """

  variant: str = "50"
  axis_name: str | None = None
  bn_momentum: float = 0.9
  onset_channel: bool = False
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, log_mel: jax.Array, *, train: bool = False) -> jax.Array:
    spec = decode_variant(self.variant)
    norm = lambda **kw: nn.BatchNorm(  # noqa: E731
        use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5,
        dtype=self.dtype, axis_name=self.axis_name if train else None, **kw)
    x = log_mel[..., None].astype(self.dtype)
    if self.onset_channel:
      x = jnp.concatenate([x, onset_features(log_mel)[..., None].astype(self.dtype)], -1)
    k = spec.stem_kernel
    # The patent's change: stride 1 (not 2) in the first convolution.
    x = nn.Conv(spec.width, (k, k), (1, 1), padding=[(k // 2, k // 2)] * 2,
                use_bias=False, dtype=self.dtype, name="stem_conv")(x)
    x = nn.relu(norm(name="stem_bn")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    block = BottleneckBlock if spec.bottleneck else BasicBlock
    if self.remat:
      # The blocks take only x (train reaches them through `norm`), so no
      # argument needs to be static.
      block = nn.remat(block)
    for stage, num_blocks in enumerate(spec.stage_sizes):
      for index in range(num_blocks):
        x = block(filters=spec.width * 2**stage,
                  strides=2 if stage > 0 and index == 0 else 1, norm=norm,
                  dtype=self.dtype, name=f"stage{stage + 1}_block{index + 1}")(x)
    return x


class Model(nn.Module):
  """M-ResNet audio tower: log-mel -> L2-normalised [B, embed_dim].

  Attributes:
    variant: "50", "18" or "tiny".
    embed_dim: joint embedding size (the patent's d = 128).
    axis_name: mesh axis for BatchNorm statistics under shard_map.
    pooling: "mean" (the patent's), "mean_std" or "mean_max" over time (see
      `jplaylist.models.pooling`); the latter two double the projection's input.
    onset_channel: feed the trunk `onset_features` as a second channel.
    dtype: compute dtype (e.g. jnp.bfloat16); parameters stay float32.
    remat: rematerialise each residual block (same values and parameters,
      less activation memory, one more forward pass of the trunk).
    normalize: L2-normalise the projection (the contrastive towers); False
      returns it as is (an embedding shaped to a prior, `models/adjacency.py`).
  """

  variant: str = "50"
  embed_dim: int = 128
  axis_name: str | None = None
  pooling: str = "mean"
  onset_channel: bool = False
  dtype: Any = jnp.float32
  remat: bool = False
  normalize: bool = True

  @nn.compact
  def __call__(self, log_mel: jax.Array, *, frame_mask: jax.Array | None = None,
               side_features: jax.Array | None = None, train: bool = False) -> jax.Array:
    """Embeds log-mel spectrograms.

    Args:
      log_mel: [B, frames, mels].
      frame_mask: [B, frames] bool, True on frames of real audio (see
        `pooling.frame_mask`); None pools over every frame.
      side_features: [B, S] clip-level features (e.g. `key_profile.KeyProfiles`
        of the clip's pitch classes) joined to the pooled trunk features
        before the projection, or None.
      train: BatchNorm on batch statistics (and updates running ones).

    Returns:
      [B, embed_dim] float32, unit norm (with `normalize`).
    """
    features = ResNetTrunk(self.variant, self.axis_name, onset_channel=self.onset_channel,
                           dtype=self.dtype, remat=self.remat, name="trunk")(
                               log_mel, train=train)
    weights = None
    if frame_mask is not None:
      if frame_mask.shape != log_mel.shape[:2]:
        raise ValueError(f"frame_mask shape {frame_mask.shape} does not match the "
                         f"log-mel's [B, frames] {log_mel.shape[:2]}")
      weights = pooling_lib.block_weights(frame_mask, features.shape[1], TIME_STRIDE)
    pooled = pooling_lib.temporal_pool(features, weights, self.pooling)
    if side_features is not None:
      pooled = jnp.concatenate([pooled, side_features.astype(pooled.dtype)], axis=-1)
    embedding = nn.Dense(self.embed_dim, name="projection")(pooled)
    return l2_normalize(embedding) if self.normalize else embedding.astype(jnp.float32)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def count_params(tree) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(tree))


def stage_channels(variant: str) -> Sequence[int]:
  spec = decode_variant(variant)
  return [spec.width * 2**s * (4 if spec.bottleneck else 1)
          for s in range(len(spec.stage_sizes))]
