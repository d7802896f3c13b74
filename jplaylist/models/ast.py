"""Audio Spectrogram Transformer (AST): the MuLan audio tower.

The MuLan patent's M-AST audio encoder is a ViT-Base (Gong et al., "AST: Audio
Spectrogram Transformer", 2021) over 16x16 patches of a log-mel spectrogram
taken with stride 10 on both the frequency and the time axis. This module
computes exactly what Hugging Face's `ASTModel` computes, so AudioSet-trained
AST checkpoints import without change:

  log_mel [B, T, F] -> transpose to [B, F, T] -> conv 16x16 / stride (10, 10)
    -> patches in frequency-major order (index = f * time_patches + t)
    -> prepend [CLS] (and the DeiT distillation token) -> + positions
    -> pre-LN blocks -> final LayerNorm.

With the default 128 mels x 400 frames (4 s at the 10 ms hop of HF's feature
extractor) the patch grid is 12 (frequency) x 39 (time) = 468 patches. `load`
imports an HF checkpoint and resizes the positional embeddings when it was
trained on another window (AudioSet AST uses 1024 frames: a 12 x 101 grid).
"""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from jplaylist.models import checkpoint_io

VARIANTS = {
    "base": dict(num_layers=12, hidden_size=768, num_heads=12, mlp_dim=3072),
    "small": dict(num_layers=12, hidden_size=384, num_heads=6, mlp_dim=1536),
    "tiny": dict(num_layers=2, hidden_size=64, num_heads=2, mlp_dim=128),
}
# HF ASTForAudioClassification wraps ASTModel under this prefix.
HF_PREFIX = "audio_spectrogram_transformer."
HF_HEAD_PREFIX = "classifier."
# HF's init for kernels. Tokens and positions get it too (timm's DeiT does; HF
# zeroes them), so a model trained from scratch starts with distinct positions.
_INIT = nn.initializers.truncated_normal(stddev=0.02)


def decode_variant(name: str) -> dict[str, int]:
  """Hyper-parameters of a named variant (num_layers, hidden_size, ...)."""
  if name not in VARIANTS:
    raise ValueError(f"Unknown AST variant {name!r}; known: {', '.join(VARIANTS)}")
  return dict(VARIANTS[name])


def patch_grid(num_mel_bins: int, num_frames: int, patch_size: int = 16,
               frequency_stride: int = 10, time_stride: int = 10) -> tuple[int, int]:
  """(freq_patches, time_patches) of a 'valid' conv over [num_mel_bins, num_frames]."""
  if min(num_mel_bins, num_frames) < patch_size:
    raise ValueError(f"Spectrogram {num_mel_bins} mels x {num_frames} frames is "
                     f"smaller than one {patch_size}x{patch_size} patch")
  return ((num_mel_bins - patch_size) // frequency_stride + 1,
          (num_frames - patch_size) // time_stride + 1)


def _layer_norm(module: nn.Module, name: str) -> nn.LayerNorm:
  # Two-pass variance, as torch computes it: with eps only 1e-12, flax's
  # one-pass E[x^2] - E[x]^2 can cancel to ~0 for low-variance rows.
  return nn.LayerNorm(epsilon=1e-12, use_fast_variance=False, dtype=module.dtype,
                      param_dtype=module.param_dtype, name=name)


class SelfAttention(nn.Module):
  """Multi-head self-attention, separate query/key/value Dense layers as in HF."""

  hidden_size: int
  num_heads: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, N, H] -> [B, N, H] (before the output projection's dropout)."""
    if self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                       f"num_heads {self.num_heads}")
    dense = lambda name: nn.Dense(self.hidden_size, dtype=self.dtype, name=name,
                                  param_dtype=self.param_dtype, kernel_init=_INIT)
    head_shape = x.shape[:-1] + (self.num_heads, self.hidden_size // self.num_heads)
    query, key, value = (dense(name)(x).reshape(head_shape)
                         for name in ("query", "key", "value"))
    # dot_product_attention takes the softmax in float32 even when dtype is bf16.
    context = jax.nn.dot_product_attention(query, key, value)
    return dense("output")(context.reshape(x.shape[:-1] + (self.hidden_size,)))


class EncoderBlock(nn.Module):
  """Pre-LN transformer block: x + attn(LN(x)), then h + MLP(LN(h))."""

  hidden_size: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: [B, N, H] -> [B, N, H]; `train` is positional so `nn.remat` can
    hold it static (it decides dropout in Python)."""
    dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
    h = SelfAttention(self.hidden_size, self.num_heads, dtype=self.dtype,
                      param_dtype=self.param_dtype, name="attention")(
                          _layer_norm(self, "layernorm_before")(x))
    x = x + dropout(h)
    h = _layer_norm(self, "layernorm_after")(x)
    h = nn.Dense(self.mlp_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                 kernel_init=_INIT, name="intermediate")(h)
    h = nn.gelu(h, approximate=False)  # HF "gelu" is the exact erf form.
    h = nn.Dense(self.hidden_size, dtype=self.dtype, param_dtype=self.param_dtype,
                 kernel_init=_INIT, name="output")(h)
    return x + dropout(h)


class Embeddings(nn.Module):
  """Patch embeddings, [CLS] (+ distillation) tokens and learned positions."""

  hidden_size: int
  patch_size: int
  strides: tuple[int, int]
  use_distillation_token: bool
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, log_mel: jax.Array) -> jax.Array:
    """log_mel: [B, T, F] -> tokens [B, prefix + freq_patches * time_patches, H]."""
    # HF convolves the spectrogram as an image [freq, time]; NHWC here.
    image = jnp.swapaxes(log_mel, 1, 2)[..., None]
    tokens = nn.Conv(self.hidden_size, (self.patch_size,) * 2, strides=self.strides,
                     padding="VALID", dtype=self.dtype, param_dtype=self.param_dtype,
                     kernel_init=_INIT, name="patch_embeddings")(image)
    batch = tokens.shape[0]
    # Row-major flattening puts patches in HF's frequency-major order.
    tokens = tokens.reshape(batch, -1, self.hidden_size)
    names = ["cls_token"]
    if self.use_distillation_token:
      names.append("distillation_token")
    prefix = [self.param(name, _INIT, (1, 1, self.hidden_size), self.param_dtype)
              for name in names]
    prefix = [jnp.broadcast_to(p, (batch, 1, self.hidden_size)).astype(tokens.dtype)
              for p in prefix]
    tokens = jnp.concatenate(prefix + [tokens], axis=1)
    positions = self.param("position_embeddings", _INIT, (1,) + tokens.shape[1:],
                           self.param_dtype)
    return tokens + positions.astype(tokens.dtype)


class ASTEncoder(nn.Module):
  """AST encoder: embeddings, `num_layers` pre-LN blocks, final LayerNorm.

  Attributes:
    num_layers, hidden_size, num_heads, mlp_dim: transformer size (see VARIANTS).
    num_mel_bins, num_frames: input window the positional embeddings are for.
    patch_size, frequency_stride, time_stride: the patching conv.
    use_distillation_token: prepend DeiT's second token after [CLS], as AST
      and its HF checkpoints do.
    dropout_rate: on the embeddings and each residual branch (HF's
      hidden_dropout_prob); needs a 'dropout' rng when train=True.
    dtype: compute dtype (e.g. jnp.bfloat16); param_dtype: storage dtype.
    remat: recompute each block's activations in the backward pass
      (`nn.remat` under the block's own name: same parameter tree).
  """

  num_layers: int = 12
  hidden_size: int = 768
  num_heads: int = 12
  mlp_dim: int = 3072
  num_mel_bins: int = 128
  num_frames: int = 400
  patch_size: int = 16
  frequency_stride: int = 10
  time_stride: int = 10
  use_distillation_token: bool = True
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: bool = False

  @property
  def patch_grid(self) -> tuple[int, int]:
    """(freq_patches, time_patches), e.g. (12, 39) for 128 mels x 400 frames."""
    return patch_grid(self.num_mel_bins, self.num_frames, self.patch_size,
                      self.frequency_stride, self.time_stride)

  @property
  def num_prefix_tokens(self) -> int:
    return 2 if self.use_distillation_token else 1

  @nn.compact
  def __call__(self, log_mel: jax.Array, *, train: bool = False
               ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """Encodes a batch of spectrograms.

    Args:
      log_mel: [B, num_frames, num_mel_bins] log-mel spectrogram, time first
        (HF ASTFeatureExtractor's input_values).
      train: enables dropout.

    Returns:
      (last_hidden_state [B, N, H] after the final LayerNorm,
       hidden_states: num_layers + 1 arrays [B, N, H]: the embeddings, then
       each block's output before the final LayerNorm), where
       N = num_prefix_tokens + freq_patches * time_patches. (transformers
       4.57's output_hidden_states puts last_hidden_state in the last place.)
    """
    expected = (self.num_frames, self.num_mel_bins)
    if log_mel.ndim != 3 or tuple(log_mel.shape[1:]) != expected:
      raise ValueError(f"log_mel must be [B, {expected[0]} frames, {expected[1]} "
                       f"mels], got {tuple(log_mel.shape)}")
    x = Embeddings(self.hidden_size, self.patch_size,
                   (self.frequency_stride, self.time_stride),
                   self.use_distillation_token, dtype=self.dtype,
                   param_dtype=self.param_dtype,
                   name="embeddings")(log_mel.astype(self.dtype))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    hidden_states = [x]
    # Argument 2 (self being 0) is `train`.
    block = nn.remat(EncoderBlock, static_argnums=(2,)) if self.remat else EncoderBlock
    for i in range(self.num_layers):
      x = block(self.hidden_size, self.num_heads, self.mlp_dim,
                self.dropout_rate, dtype=self.dtype,
                param_dtype=self.param_dtype, name=f"layer_{i}")(x, train)
      hidden_states.append(x)
    return _layer_norm(self, "layernorm")(x), tuple(hidden_states)


class Model(nn.Module):
  """AST audio tower: [CLS] output projected to the joint embedding space.

  Attributes:
    variant: encoder size, a key of VARIANTS ("base" is the patent's M-AST).
    embed_dim: joint embedding size.
    num_mel_bins, num_frames, use_distillation_token, dropout_rate, dtype,
      remat: as in ASTEncoder.
  """

  variant: str = "base"
  embed_dim: int = 128
  num_mel_bins: int = 128
  num_frames: int = 400
  use_distillation_token: bool = True
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, log_mel: jax.Array, *, train: bool = False) -> jax.Array:
    """log_mel: [B, num_frames, num_mel_bins] -> [B, embed_dim] float32, unit norm."""
    encoder = ASTEncoder(
        **decode_variant(self.variant), num_mel_bins=self.num_mel_bins,
        num_frames=self.num_frames, use_distillation_token=self.use_distillation_token,
        dropout_rate=self.dropout_rate, dtype=self.dtype, remat=self.remat,
        name="encoder")
    last_hidden_state, _ = encoder(log_mel, train=train)
    # The projection and the norm run in float32: the contrastive loss divides
    # by a small temperature, so bf16 rounding here would be amplified.
    cls = last_hidden_state[:, 0].astype(jnp.float32)
    z = nn.Dense(self.embed_dim, name="projection")(cls)
    return z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), 1e-12))


def resize_position_embeddings(position_embeddings: np.ndarray,
                               from_grid: tuple[int, int], to_grid: tuple[int, int],
                               num_prefix_tokens: int) -> np.ndarray:
  """Bilinearly resizes the patch positions on the (freq, time) grid.

  Same values as torch F.interpolate(mode='bilinear', align_corners=False): no
  antialiasing, so shrinking 101 time positions to 39 samples rather than averages.

  Args:
    position_embeddings: [1, num_prefix_tokens + prod(from_grid), H].
    from_grid, to_grid: (freq_patches, time_patches).
    num_prefix_tokens: leading rows ([CLS], distillation) kept unchanged.

  Returns:
    [1, num_prefix_tokens + prod(to_grid), H].
  """
  prefix = position_embeddings[:, :num_prefix_tokens]
  patches = position_embeddings[0, num_prefix_tokens:]
  hidden = patches.shape[-1]
  patches = patches.reshape(*from_grid, hidden).astype(np.float32)
  resized = jax.image.resize(patches, (*to_grid, hidden), method="bilinear",
                             antialias=False)
  resized = np.asarray(resized).reshape(1, -1, hidden).astype(position_embeddings.dtype)
  return np.concatenate([prefix, resized], axis=1)


# Flax param path (joined with '/') -> HF ASTModel state-dict name, in order.
_HF_RENAMES = (
    (r"patch_embeddings/", "patch_embeddings.projection."),
    (r"^layer_(\d+)/", r"encoder.layer.\1."),
    (r"attention/(query|key|value)/", r"attention.attention.\1."),
    (r"attention/output/", "attention.output.dense."),
    (r"(layer\.\d+\.)(intermediate|output)/", r"\1\2.dense."),
    (r"(kernel|scale)$", "weight"),
    ("/", "."),
)


def _hf_key(flax_path: tuple[str, ...]) -> str:
  """HF ASTModel state-dict name of a param path under the encoder."""
  key = "/".join(flax_path)
  for pattern, replacement in _HF_RENAMES:
    key = re.sub(pattern, replacement, key)
  return key


def _to_flax(value: np.ndarray, flax_path: tuple[str, ...]) -> np.ndarray:
  if flax_path[-1] != "kernel":
    return value
  # torch Conv2d [out, in, kh, kw] -> flax [kh, kw, in, out];
  # torch Linear [out, in] -> flax [in, out].
  return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T


def _grid(num_patches: int, freq_patches: int, what: str) -> tuple[int, int]:
  if num_patches % freq_patches:
    raise ValueError(f"{what}: {num_patches} patch positions do not fill a grid with "
                     f"{freq_patches} frequency patches; pass num_mel_bins")
  return freq_patches, num_patches // freq_patches


def _checkpoint_grid(num_patches: int, config: dict | None, freq_patches: int,
                     patch_size: int) -> tuple[int, int]:
  """The checkpoint's (freq, time) grid, from its config.json or its positions."""
  if config is None or "max_length" not in config:
    return _grid(num_patches, freq_patches, "checkpoint")
  grid = patch_grid(config.get("num_mel_bins", 128), config["max_length"],
                    config.get("patch_size", patch_size),
                    config.get("frequency_stride", 10), config.get("time_stride", 10))
  if grid[0] * grid[1] != num_patches:
    raise ValueError(f"config.json describes a {grid} patch grid but the checkpoint "
                     f"has {num_patches} patch positions")
  return grid


def load(params, path, *, strict: bool = True, num_mel_bins: int | None = None,
         num_frames: int | None = None) -> tuple[dict, dict[str, Any]]:
  """Imports a Hugging Face AST checkpoint into Model (or ASTEncoder) params.

  When the checkpoint's positional grid differs from the model's (AudioSet AST:
  1024 frames, 12 x 101), the patch positions are resized bilinearly on the
  (freq, time) grid and the [CLS]/distillation rows are kept. The checkpoint's
  grid comes from config.json beside the weights (max_length, num_mel_bins,
  strides) or, without one, from its number of positions and the model's
  frequency grid.

  Args:
    params: a Model's params {'encoder': ..., 'projection': ...} (the
      projection is kept), or an ASTEncoder's params, as in `init(...)['params']`.
      Only shapes and dtypes are read, so `jax.eval_shape(model.init, ...)`
      structs do for params the checkpoint provides.
    path: directory with model.safetensors or pytorch_model.bin, a
      .safetensors file, a .bin/.pt PyTorch state dict, or a mapping name ->
      array. ASTModel names, or ASTForAudioClassification names (prefixed
      'audio_spectrogram_transformer.', whose 'classifier.' head is ignored).
    strict: raise on missing params or unused checkpoint keys; otherwise keep
      the initial values of missing params and report both.
    num_mel_bins, num_frames: the model's input window, which its params alone
      do not pin down. Defaults: 128 mels (stride 10), frames inferred from the
      number of positions.

  Returns:
    (params with the encoder replaced, report: 'loaded', 'ignored'
     (classifier head), 'missing', 'unused' key lists, and 'resized':
     (checkpoint grid, model grid) or None).

  Raises:
    ValueError: naming the key on a shape mismatch (always), on missing or
      unused keys when strict.
  """
  checkpoint = checkpoint_io.read(path)
  state, config = checkpoint.arrays, checkpoint.config
  ignored = sorted(k for k in state if k.startswith(HF_HEAD_PREFIX))
  state = {k.removeprefix(HF_PREFIX): v for k, v in state.items()
           if not k.startswith(HF_HEAD_PREFIX)}
  is_model = "encoder" in params
  flat = traverse_util.flatten_dict(params["encoder"] if is_model else params)
  loaded, missing, resized, new_flat = [], [], None, {}
  for flax_path, init_value in flat.items():
    key = _hf_key(flax_path)
    if key not in state:
      missing.append(key)
      new_flat[flax_path] = init_value
      continue
    value = _to_flax(np.asarray(state[key]), flax_path)
    if flax_path[-1] == "position_embeddings" and value.shape != init_value.shape:
      prefix = 2 if ("embeddings", "distillation_token") in flat else 1
      ckpt_prefix = 2 if "embeddings.distillation_token" in state else 1
      if prefix != ckpt_prefix or value.shape[2] != init_value.shape[2]:
        raise ValueError(f"{key}: checkpoint shape {value.shape} with {ckpt_prefix} "
                         f"leading tokens vs the model's {tuple(init_value.shape)} "
                         f"with {prefix}")
      patch_size = flat[("embeddings", "patch_embeddings", "kernel")].shape[0]
      if num_frames is None:
        freq_patches = ((num_mel_bins or 128) - patch_size) // 10 + 1
        model_grid = _grid(init_value.shape[1] - prefix, freq_patches, "model")
      else:
        model_grid = patch_grid(num_mel_bins or 128, num_frames, patch_size)
      ckpt_grid = _checkpoint_grid(value.shape[1] - prefix, config, model_grid[0],
                                   patch_size)
      value = resize_position_embeddings(value, ckpt_grid, model_grid, prefix)
      resized = (ckpt_grid, model_grid)
    if value.shape != init_value.shape:
      raise ValueError(f"{key}: checkpoint shape {tuple(value.shape)} does not match "
                       f"the model's {tuple(init_value.shape)}")
    new_flat[flax_path] = value.astype(init_value.dtype)
    loaded.append(key)
  unused = sorted(set(state) - set(loaded))
  if strict and (missing or unused):
    raise ValueError(f"AST checkpoint does not fit the model: missing from the "
                     f"checkpoint {missing}; unused checkpoint keys {unused}")
  encoder = traverse_util.unflatten_dict(new_flat)
  out = {**params, "encoder": encoder} if is_model else encoder
  return out, dict(loaded=loaded, ignored=ignored, missing=missing, unused=unused,
                   resized=resized)
