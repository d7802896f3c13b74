"""Contrastive losses of the joint audio-text embedding, exact at any batch size.

B pairs (a_i, t_i) of L2-normalised audio and text embeddings, similarities
s_ij = a_i . t_j, logits l_ij = s_ij / temperature. Three losses (`kind`):

  "mulan"   the patent's MuLan loss: one softmax per pair whose denominator
            holds the positive, the other texts against a_i and the other
            audios against t_i:
              loss_i = log(exp l_ii + sum_{j!=i} exp l_ij + sum_{j!=i} exp l_ji)
                       - l_ii
  "clip"    mean of the audio->text (row) and text->audio (column) cross
            entropies (CLIP, Radford et al. 2021).
  "siglip"  the pairwise sigmoid loss with a learned bias b (SigLIP, Zhai et
            al. 2023): -(1/B) sum_ij log sigmoid(z_ij (l_ij + b)), z_ij = +1 on
            the diagonal, -1 elsewhere.

Every implementation computes the same global loss and metrics; they differ in
where the [B, B] logits live:

  axis_name=None, "gather"   the whole matrix at once (plain; under `jit` with
                             sharded global arrays XLA may partition it).
  axis_name=None, "chunked"  column chunks of `chunk_size` in a `lax.scan`:
                             peak memory B x chunk_size, forward and backward.
  axis_name=..., "gather"    inside `jax.shard_map`: local rows against the
                             all-gathered columns, B_local x B per device.
  axis_name=..., "ring"      column blocks travel around the devices with
                             `ppermute`: B_local x B_local per device, or
                             B_local x chunk_size with `chunk_size` (each
                             visiting block folded in column chunks).

Blockwise variants keep running log-sum-exp statistics (`_Stats`) so no
intermediate needs the whole row or column at once.

Duplicate texts (`text_key`): when two pairs of a batch carry the same text,
say the ontology label "Flute" on two recordings, a_i and t_j (i != j) are not
a negative pair. Given a key per pair that is equal exactly for equal texts
(`text_identity_key`), such off-diagonal pairs are masked out of the
negatives, as in CLIP-style training on captioned data: they leave every
softmax denominator (rows and columns, mulan and clip), the siglip sum, and
the accuracy metrics' best negative. Each pair keeps its own diagonal
positive, so the loss stays one positive per softmax.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

KINDS = ("mulan", "clip", "siglip")
IMPLEMENTATIONS = ("gather", "ring", "chunked")


class _Stats(NamedTuple):
  """Running statistics of n queries (one per pair) over the keys seen so far.

  A query is an audio scoring texts (a row of the logits) or a text scoring
  audios (a column); the same code serves both directions.
  """
  shift: jax.Array          # [n] running max logit (the log-sum-exp shift)
  sum_exp: jax.Array        # [n] sum of exp(logit - shift) over counted keys
  positive: jax.Array       # [n] logit of the paired key (0 until seen)
  best_negative: jax.Array  # [n] highest logit of any other key
  sigmoid_loss: jax.Array   # [n] siglip: sum of -log sigmoid(z (logit + b))


def _init_stats(num_queries: int) -> _Stats:
  # A finite floor, not -inf: exp(floor - shift) is then 0 without inf - inf.
  floor = jnp.full((num_queries,), jnp.finfo(jnp.float32).min, jnp.float32)
  zeros = jnp.zeros((num_queries,), jnp.float32)
  return _Stats(shift=floor, sum_exp=zeros, positive=zeros, best_negative=floor,
                sigmoid_loss=zeros)


def _accumulate(stats: _Stats, logits: jax.Array, is_positive: jax.Array,
                is_excluded: jax.Array | None, *, key_axis: int, bias: jax.Array | None,
                exclude_positive: bool) -> _Stats:
  """Folds one block of keys into the statistics of its queries.

  Args:
    stats: statistics of the block's n queries.
    logits: [n, m] (key_axis=1) or [m, n] (key_axis=0) float32 logits of n
      queries against m keys.
    is_positive: bool, shaped like logits, True where query and key pair.
    is_excluded: bool, shaped like logits, True on pairs that are neither
      positive nor negative (duplicate texts), or None.
    key_axis: the axis of the keys, reduced over. Reducing over axis 0 rather
      than transposing spares XLA a copy of the block and of its cotangent.
    bias: [] siglip bias, or None to skip the sigmoid loss.
    exclude_positive: leave the positive out of the log-sum-exp (MuLan's
      column term holds only negatives).

  Returns:
    The updated statistics.
  """
  reduce = lambda fn, x: fn(x, axis=key_axis)
  not_negative = is_positive if is_excluded is None else is_positive | is_excluded
  dropped = is_positive if exclude_positive else is_excluded
  if exclude_positive and is_excluded is not None:
    dropped = not_negative
  counted = logits if dropped is None else jnp.where(dropped, -jnp.inf, logits)
  # The shift carries no gradient: the log-sum-exp does not depend on it.
  shift = jnp.maximum(stats.shift, lax.stop_gradient(reduce(jnp.max, counted)))
  sum_exp = (stats.sum_exp * jnp.exp(stats.shift - shift)
             + reduce(jnp.sum, jnp.exp(counted - jnp.expand_dims(shift, key_axis))))
  positive = stats.positive + reduce(jnp.sum, jnp.where(is_positive, logits, 0.0))
  best_negative = jnp.maximum(
      stats.best_negative, reduce(jnp.max, jnp.where(not_negative, -jnp.inf, logits)))
  sigmoid_loss = stats.sigmoid_loss
  if bias is not None:
    sign = jnp.where(is_positive, 1.0, -1.0)
    terms = jax.nn.log_sigmoid(sign * (logits + bias))
    if is_excluded is not None:
      terms = jnp.where(is_excluded, 0.0, terms)
    sigmoid_loss -= reduce(jnp.sum, terms)
  return _Stats(shift, sum_exp, positive, best_negative, sigmoid_loss)


def _logits(queries: jax.Array, keys: jax.Array) -> jax.Array:
  """[n, d] x [m, d] -> [n, m] float32; queries already divided by temperature.

  Dividing the [n, d] queries rather than the [n, m] product keeps the
  temperature's gradient a [n, d] reduction; on the product it holds one more
  [n, m] block live in the backward pass.
  """
  return jnp.einsum("nd,md->nm", queries, keys.astype(jnp.float32))


def _pair_ids(start, size: int) -> jax.Array:
  return start + jnp.arange(size)


def _excluded(query_keys, key_keys, is_positive):
  """[n, m] True where a query and a key of different pairs share a text."""
  if query_keys is None:
    return None
  return (query_keys[:, None] == key_keys[None, :]) & ~is_positive


def _log_sum_exp(stats: _Stats) -> jax.Array:
  return stats.shift + jnp.log(stats.sum_exp)


# Each implementation returns (row statistics, column statistics) for the pairs
# this device owns: rows score audio i against all texts, columns text i
# against all audios. `scale` divides float32 queries by the temperature;
# `fold_rows` and `fold_columns` are `_accumulate` with each direction's
# settings bound.

def _plain(za, zt, keys, *, scale, fold_rows, fold_columns):
  logits = _logits(scale(za), zt)
  ids = _pair_ids(0, za.shape[0])
  is_positive = ids[:, None] == ids[None, :]
  is_excluded = _excluded(keys, keys, is_positive)
  rows = fold_rows(_init_stats(za.shape[0]), logits, is_positive, is_excluded, key_axis=1)
  columns = fold_columns(_init_stats(zt.shape[0]), logits, is_positive, is_excluded,
                         key_axis=0)
  return rows, columns


def _fold_keys(rows, columns, queries, query_keys, row_ids, zt, key_block, column_start,
               *, chunk_size, fold_rows, fold_columns):
  """Folds m keys into the statistics of their queries and of themselves.

  Args:
    rows: statistics of the n queries (their rows of the logits).
    columns: statistics of the m keys zt (their columns), as far as known.
    queries: [n, d] float32 queries, already divided by the temperature.
    query_keys: [n] text keys of the queries, or None.
    row_ids: [n] pair ids of the queries.
    zt: [m, d] keys with pair ids column_start + arange(m).
    key_block: [m] text keys of zt, or None.
    column_start: pair id of zt[0].
    chunk_size: keys per [n, chunk_size] block of logits; None: all m at once.

  Returns:
    (rows, columns), updated.
  """
  def fold_block(rows, columns, start, zt_chunk, key_chunk):
    logits = _logits(queries, zt_chunk)
    is_positive = row_ids[:, None] == _pair_ids(start, zt_chunk.shape[0])[None, :]
    is_excluded = _excluded(query_keys, key_chunk, is_positive)
    rows = fold_rows(rows, logits, is_positive, is_excluded, key_axis=1)
    columns = fold_columns(columns, logits, is_positive, is_excluded, key_axis=0)
    return rows, columns

  size = zt.shape[0]
  chunk_size = min(chunk_size or size, size)
  if chunk_size == size:  # One block: the caller decides what to store.
    return fold_block(rows, columns, column_start, zt, key_block)
  # Checkpointed so the backward pass recomputes each [n, chunk] block instead
  # of storing all of them, which would be the whole [n, m] block again.
  fold = jax.checkpoint(fold_block)
  num_full = size // chunk_size
  split = num_full * chunk_size
  stack = lambda x: x[:split].reshape(num_full, chunk_size, *x.shape[1:])  # noqa: E731
  tail = lambda x: x[split:]  # noqa: E731

  def step(rows, chunk):
    start, zt_chunk, key_chunk, column_chunk = chunk
    return fold(rows, column_chunk, start, zt_chunk, key_chunk)

  # A chunk's column statistics travel with it through the scan: each is
  # complete after its one visit, so they are scan outputs, not carry.
  rows, folded = lax.scan(step, rows, (
      column_start + jnp.arange(num_full) * chunk_size, stack(zt),
      None if key_block is None else stack(key_block), jax.tree.map(stack, columns)))
  folded = jax.tree.map(lambda c: c.reshape(-1), folded)
  if size % chunk_size:  # The remainder is one more, smaller block.
    rows, last = fold(rows, jax.tree.map(tail, columns), column_start + split, tail(zt),
                      None if key_block is None else tail(key_block))
    folded = jax.tree.map(lambda c, l: jnp.concatenate([c, l]), folded, last)
  return rows, folded


def _chunked(za, zt, keys, *, chunk_size, scale, fold_rows, fold_columns):
  """All rows against column chunks; a chunk's column statistics are complete."""
  batch_size = za.shape[0]
  return _fold_keys(_init_stats(batch_size), _init_stats(batch_size), scale(za), keys,
                    _pair_ids(0, batch_size), zt, keys, 0, chunk_size=chunk_size,
                    fold_rows=fold_rows, fold_columns=fold_columns)


def _gather(za, zt, keys, *, axis_name, scale, fold_rows, fold_columns):
  """Local rows against gathered texts; local texts against gathered audios."""
  local = za.shape[0]
  ids = _pair_ids(lax.axis_index(axis_name) * local, local)
  all_ids = _pair_ids(0, local * lax.axis_size(axis_name))
  is_positive = ids[:, None] == all_ids[None, :]
  # The relation is symmetric: the same mask serves rows and columns.
  is_excluded = None if keys is None else _excluded(
      keys, lax.all_gather(keys, axis_name, tiled=True), is_positive)
  # Gathered in their own dtype: bf16 embeddings cross the network at half size.
  za_all = lax.all_gather(za, axis_name, tiled=True)
  zt_all = lax.all_gather(zt, axis_name, tiled=True)
  rows = fold_rows(_init_stats(local), _logits(scale(za), zt_all), is_positive,
                   is_excluded, key_axis=1)
  columns = fold_columns(_init_stats(local), _logits(scale(zt), za_all), is_positive,
                         is_excluded, key_axis=1)
  return rows, columns


def _ring(za, zt, keys, *, axis_name, chunk_size, scale, fold_rows, fold_columns):
  """Text blocks, with their column statistics, hop one device per step.

  Each step folds the visiting [B_local] block in chunks of `chunk_size`
  texts, so the logits live B_local x chunk_size at a time (None: the whole
  B_local x B_local block).
  """
  local = za.shape[0]
  num_devices = lax.axis_size(axis_name)
  me = lax.axis_index(axis_name)
  row_ids = _pair_ids(me * local, local)
  to_next = [(k, (k + 1) % num_devices) for k in range(num_devices)]
  queries = scale(za)

  def fold(rows, columns, zt_block, key_block, owner):
    return _fold_keys(rows, columns, queries, keys, row_ids, zt_block, key_block,
                      owner * local, chunk_size=chunk_size, fold_rows=fold_rows,
                      fold_columns=fold_columns)
  if not chunk_size or chunk_size >= local:
    # Store only each step's inputs, not its [local, local] block. Chunked,
    # the chunks are checkpointed instead: checkpointing both would compute
    # every block of logits three times.
    fold = jax.checkpoint(fold)

  def step(carry, hops):
    rows, columns, zt_block, key_block = carry
    rows, columns = fold(rows, columns, zt_block, key_block, (me - hops) % num_devices)
    # After the last step this hop brings each block's statistics home; the
    # text keys travel with their block.
    columns, zt_block, key_block = lax.ppermute((columns, zt_block, key_block),
                                                axis_name, to_next)
    return (rows, columns, zt_block, key_block), None

  # The statistics differ per device from the first step on; scan needs the
  # carry typed that way from the start.
  fresh = lax.pcast(_init_stats(local), axis_name, to="varying")
  (rows, columns, _, _), _ = lax.scan(step, (fresh, fresh, zt, keys),
                                      jnp.arange(num_devices))
  return rows, columns


def contrastive_loss(*, za: jax.Array, zt: jax.Array, temperature: jax.Array,
                     bias: jax.Array | None = None, kind: str = "clip",
                     axis_name: str | None = None, implementation: str = "gather",
                     chunk_size: int | None = None, text_key: jax.Array | None = None
                     ) -> tuple[jax.Array, dict]:
  """The contrastive loss of a batch of pairs, and retrieval metrics.

  Args:
    za: [B, d] audio embeddings, L2-normalised (with axis_name: this device's
      [B_local, d] rows of the global batch). Any float dtype; similarities
      and all reductions are float32.
    zt: [B, d] text embeddings, L2-normalised, paired with za row by row.
    temperature: [] softmax temperature in (0, 1]; differentiable.
    bias: [] learned logit bias; required for kind="siglip", None otherwise.
    kind: "mulan", "clip" or "siglip" (see the module docstring).
    axis_name: the mesh axis za and zt are split over, when called inside
      `jax.shard_map`; None for arrays holding the whole batch.
    implementation: "gather" (with axis_name None: the plain loss), "ring"
      (needs axis_name) or "chunked" (needs chunk_size, no axis_name).
    chunk_size: columns per block of logits: required for "chunked"; for
      "ring" optional (None: whole B_local x B_local blocks); not for "gather".
    text_key: [B] integer key per pair (with axis_name: this device's
      [B_local]), equal exactly when two pairs carry the same text (see
      `text_identity_key`): off-diagonal pairs with equal keys are masked out
      of the negatives. None: every off-diagonal pair is a negative.

  Returns:
    (loss [], metrics): metrics is a dict of [] float32 arrays over the global
    batch: "loss", "temperature", "accuracy_audio_to_text" and
    "accuracy_text_to_audio" (the positive scores strictly above every other
    candidate, so a collapsed embedding reads as 0, not 1),
    "positive_similarity" (mean s_ii), "negative_similarity" (mean s_ij over
    all i != j, duplicates included), and "bias" for siglip.
  """
  if kind not in KINDS:
    raise ValueError(f"unknown loss kind {kind!r}; known: {', '.join(KINDS)}")
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"unknown implementation {implementation!r}; "
                     f"known: {', '.join(IMPLEMENTATIONS)}")
  if kind == "siglip" and bias is None:
    raise ValueError("kind='siglip': bias is required (the learned logit bias)")
  if kind != "siglip" and bias is not None:
    raise ValueError(f"kind={kind!r} takes no bias; only 'siglip' has one")
  if za.ndim != 2 or za.shape != zt.shape:
    raise ValueError(f"za and zt must both be [B, d], got {za.shape} and {zt.shape}")
  if text_key is not None and jnp.shape(text_key) != za.shape[:1]:
    raise ValueError(f"text_key must be [B] = {za.shape[:1]}, got {jnp.shape(text_key)}")
  if jnp.ndim(temperature) != 0:
    raise ValueError(f"temperature must be a scalar, got shape {jnp.shape(temperature)}")
  if implementation == "ring" and axis_name is None:
    raise ValueError("implementation='ring' runs inside shard_map: give axis_name")
  if implementation == "chunked" and (axis_name is not None or not chunk_size
                                      or chunk_size < 1):
    raise ValueError("implementation='chunked' needs a positive chunk_size and no "
                     f"axis_name, got chunk_size={chunk_size}, axis_name={axis_name!r}")
  if chunk_size is not None and (implementation == "gather" or chunk_size < 1):
    raise ValueError(f"chunk_size={chunk_size}: a positive chunk_size applies to "
                     f"implementation 'chunked' or 'ring', not {implementation!r}")

  temperature = jnp.asarray(temperature, jnp.float32)
  bias = None if bias is None else jnp.asarray(bias, jnp.float32)
  blocks = dict(
      # float32 before scaling: bf16 logits at temperature 0.07 would be off
      # by about 0.05.
      scale=lambda z: z.astype(jnp.float32) / temperature,
      fold_rows=functools.partial(_accumulate, bias=bias, exclude_positive=False),
      # MuLan's column term holds only the other audios; siglip counts each
      # pair once, in the rows.
      fold_columns=functools.partial(_accumulate, bias=None,
                                     exclude_positive=kind == "mulan"))
  if axis_name is None:
    batch_size = za.shape[0]
    if implementation == "chunked":
      rows, columns = _chunked(za, zt, text_key, chunk_size=chunk_size, **blocks)
    else:
      rows, columns = _plain(za, zt, text_key, **blocks)
  else:
    batch_size = za.shape[0] * lax.axis_size(axis_name)
    if implementation == "ring":
      rows, columns = _ring(za, zt, text_key, axis_name=axis_name, chunk_size=chunk_size,
                            **blocks)
    else:
      rows, columns = _gather(za, zt, text_key, axis_name=axis_name, **blocks)
  total = functools.partial(_global_sum, axis_name=axis_name)

  if kind == "clip":
    per_pair = 0.5 * (_log_sum_exp(rows) + _log_sum_exp(columns)) - rows.positive
  elif kind == "mulan":
    per_pair = jnp.logaddexp(_log_sum_exp(rows), _log_sum_exp(columns)) - rows.positive
  else:
    per_pair = rows.sigmoid_loss
  loss = total(per_pair) / batch_size

  za, zt = za.astype(jnp.float32), zt.astype(jnp.float32)
  sum_positive = total(jnp.sum(za * zt, axis=1))
  # All B^2 similarities without the matrix: (sum_i a_i) . (sum_j t_j).
  sum_all = jnp.dot(total(za, axis=0), total(zt, axis=0))
  metrics = {
      "loss": loss,
      "temperature": temperature,
      "accuracy_audio_to_text": total(rows.positive > rows.best_negative) / batch_size,
      "accuracy_text_to_audio":
          total(columns.positive > columns.best_negative) / batch_size,
      "positive_similarity": sum_positive / batch_size,
      "negative_similarity":
          # A float: B (B - 1) overflows int32 from B = 46,341 on.
          (sum_all - sum_positive) / float(max(batch_size * (batch_size - 1), 1)),
  }
  if bias is not None:
    metrics["bias"] = bias
  return loss, metrics


def _global_sum(x: jax.Array, axis: int | None = None, *,
                axis_name: str | None) -> jax.Array:
  """float32 sum of x over `axis`, and over the devices of `axis_name` if given."""
  partial = jnp.sum(x, axis=axis, dtype=jnp.float32)
  return partial if axis_name is None else lax.psum(partial, axis_name)


def make_sharded_loss(mesh: Mesh, *, data_axis: str = "data", kind: str = "clip",
                      implementation: str = "gather", chunk_size: int | None = None):
  """`contrastive_loss` over global arrays split along `data_axis` of `mesh`.

  Args:
    mesh: the device mesh; za and zt are split over `data_axis` and replicated
      over any other axes.
    data_axis: the mesh axis holding the batch.
    kind: "mulan", "clip" or "siglip".
    implementation: "gather" or "ring".
    chunk_size: "ring" only: texts per [B_local, chunk_size] block of logits
      within each visiting block; None: the whole B_local x B_local block.

  Returns:
    loss_fn(za [B, d], zt [B, d], temperature [], bias [] | None = None,
    text_key [B] | None = None) -> (loss [], metrics), outputs replicated; B
    must divide by the axis size.
    Callable inside `jax.jit`.
  """
  if implementation not in ("gather", "ring"):
    raise ValueError(f"sharded implementation must be 'gather' or 'ring', "
                     f"got {implementation!r}")

  def per_device(za, zt, temperature, bias, text_key):
    return contrastive_loss(za=za, zt=zt, temperature=temperature, bias=bias, kind=kind,
                            axis_name=data_axis, implementation=implementation,
                            chunk_size=chunk_size, text_key=text_key)

  def loss_fn(za, zt, temperature, bias=None, text_key=None):
    # None is an empty pytree, so one spec serves both cases.
    mapped = jax.shard_map(per_device, mesh=mesh,
                           in_specs=(P(data_axis), P(data_axis), P(), P(), P(data_axis)),
                           out_specs=P())
    return mapped(za, zt, temperature, bias, text_key)

  return loss_fn


def _mix32(x: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finaliser: every input bit reaches every output bit."""
  x ^= x >> 16
  x *= jnp.uint32(0x85EBCA6B)
  x ^= x >> 13
  x *= jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def text_identity_key(text_ids: jax.Array, text_mask: jax.Array) -> jax.Array:
  """A [B] int32 hash of each token sequence, for `contrastive_loss(text_key=)`.

  Equal texts (same ids on their real tokens, whatever the padding holds)
  get equal keys; different texts collide with probability about 2^-32 per
  pair. Computed on device from the batch, so no host code tracks texts.

  Args:
    text_ids: [B, L] int token ids.
    text_mask: [B, L], nonzero on real tokens.

  Returns:
    [B] int32.
  """
  ids = text_ids.astype(jnp.uint32)
  real = text_mask != 0
  positions = jnp.arange(ids.shape[1], dtype=jnp.uint32)[None, :]
  # Each (position, token) hashed on its own, summed: order-sensitive, and
  # padding contributes nothing; the length enters once more at the end.
  per_token = _mix32(ids * jnp.uint32(0x9E3779B1) + _mix32(positions + jnp.uint32(1)))
  total = jnp.sum(jnp.where(real, per_token, jnp.uint32(0)), axis=1, dtype=jnp.uint32)
  length = jnp.sum(real, axis=1).astype(jnp.uint32)
  return lax.bitcast_convert_type(_mix32(total ^ _mix32(length + jnp.uint32(7))),
                                  jnp.int32)


def uniform_logits_loss(batch_size: int, kind: str) -> float:
  """The loss when every logit is equal (and, for siglip, logit + bias = 0).

  Early in training the loss should sit near this value: ln B for clip,
  ln(2B - 1) for mulan, B ln 2 for siglip (B^2 pairs at log 2 each, over B).
  """
  if kind == "clip":
    return math.log(batch_size)
  if kind == "mulan":
    return math.log(2 * batch_size - 1)
  if kind == "siglip":
    return batch_size * math.log(2.0)
  raise ValueError(f"unknown loss kind {kind!r}; known: {', '.join(KINDS)}")


def similarity_distillation(student: jax.Array, teacher: jax.Array) -> jax.Array:
  """Mean squared difference of the two pairwise-cosine matrices, off the diagonal.

  Keeps the batch's geometry of the student (a tuned text tower's output)
  near that of the teacher (the sentence encoder it started from), whatever
  their dimensions: relational distillation in the sense of Park et al.,
  "Relational Knowledge Distillation" (CVPR 2019), on cosines. Pairs of equal
  texts agree in both (cosine 1) and add nothing.

  Args:
    student: [B, d] unit-norm rows (the gradient flows here).
    teacher: [B, e] unit-norm rows (held fixed).

  Returns:
    [] float32; 0 for B < 2.
  """
  count = student.shape[0]
  if count < 2:
    return jnp.zeros([], jnp.float32)
  student = student.astype(jnp.float32)
  teacher = lax.stop_gradient(teacher.astype(jnp.float32))
  difference = student @ student.T - teacher @ teacher.T
  off_diagonal = 1.0 - jnp.eye(count, dtype=jnp.float32)
  return jnp.sum(jnp.square(difference) * off_diagonal) / (count * (count - 1))
