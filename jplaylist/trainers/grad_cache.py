"""Gradient caching: contrastive batches larger than memory, exact gradients.

Gao et al. 2021, "Scaling Deep Metric Learning Beyond the GPU Memory Limit"
(GradCache). The contrastive loss couples every pair of the global batch, so
accumulating gradients over micro-batches (optax.MultiSteps) changes the loss:
negatives come from each micro-batch only. Gradient caching keeps the loss of
the whole batch and needs the towers' activations of one micro-batch at a
time:

  1. embed   every micro-batch through the towers, keeping no activations
             (no differentiation), giving the embeddings of the whole batch;
  2. loss    the loss over the whole batch, differentiated with respect to
             the embeddings (the cached cotangents) and to the parameters it
             reads directly (temperature, siglip bias);
  3. back    per micro-batch, the towers again under `jax.vjp`, pulling the
             cached cotangents back to the parameters; the sum over
             micro-batches plus step 2's parameter gradient is the gradient.

The towers run twice per step (about 1.3x the compute of one pass with
backward). Both passes of micro-batch k use the same rng, so SpecAugment and
dropout draw the same masks in the embedding and in the backward pass, and the
result is exactly the gradient of the loss of the embeddings computed in pass
1. Micro-batch k's rng is `jax.random.split(rng, K)[k]`.

Micro-batches take B / K rows from every data shard (rows k*m .. (k+1)*m - 1
of each shard's B_local rows, m = B_local / K), so each is still split over all
devices and no example crosses devices; the embeddings are put back in batch
order before the loss.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

# embed_fn(params, micro_batch, rng) -> (embeddings, state); embeddings is a
# pytree of [b, ...] arrays (za, zt), state e.g. updated BatchNorm statistics.
EmbedFn = Callable[[Any, dict, jax.Array], tuple[Any, Any]]
# loss_fn(params, embeddings [B, ...], batch) -> (loss [], aux)
LossFn = Callable[[Any, Any, dict], tuple[jax.Array, Any]]


def to_microbatches(tree, num_microbatches: int, num_shards: int = 1):
  """[B, ...] leaves -> [K, B / K, ...], micro-batch k taking rows from every shard.

  Args:
    tree: pytree of arrays whose leading axis is the batch, laid out as
      `num_shards` contiguous shards (as `NamedSharding(mesh, P(data_axis))`).
    num_microbatches: K; must divide each shard's B / num_shards rows.
    num_shards: the size of the mesh axis the batch is split over.

  Returns:
    The tree with leaves [K, B / K, ...].
  """
  def split(x):
    batch_size = x.shape[0]
    if batch_size % (num_shards * num_microbatches):
      raise ValueError(
          f"gradient caching: the batch of {batch_size} over {num_shards} data shards "
          f"({batch_size / num_shards:g} per shard) does not split into "
          f"{num_microbatches} micro-batches (config.optimizer."
          f"gradient_cache_microbatches); it must divide each shard's rows")
    per_shard = batch_size // num_shards
    x = x.reshape(num_shards, num_microbatches, per_shard // num_microbatches, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1).reshape(num_microbatches, batch_size // num_microbatches,
                                         *x.shape[3:])
  return jax.tree.map(split, tree)


def from_microbatches(tree, num_shards: int = 1):
  """Inverse of `to_microbatches`: [K, B / K, ...] leaves -> [B, ...] in batch order."""
  def merge(x):
    num_microbatches, size = x.shape[:2]
    x = x.reshape(num_microbatches, num_shards, size // num_shards, *x.shape[2:])
    return jnp.swapaxes(x, 0, 1).reshape(num_microbatches * size, *x.shape[3:])
  return jax.tree.map(merge, tree)


def value_and_grad(embed_fn: EmbedFn, loss_fn: LossFn, params, batch: dict,
                   rng: jax.Array, *, num_microbatches: int, mesh: Mesh | None = None,
                   data_axis: str = "data"):
  """The loss of the whole batch and its parameter gradient, K micro-batches at a time.

  Args:
    embed_fn: (params, micro_batch, rng) -> (embeddings, state): the towers on
      one micro-batch (every leaf of `batch`, [B / K, ...]); differentiable in
      params. `state` (e.g. BatchNorm statistics) is averaged over micro-batches.
    loss_fn: (params, embeddings, batch) -> (loss [], aux): the loss of the
      whole batch's embeddings ([B, ...], batch order); may read params
      (temperature, bias) and the whole batch (e.g. duplicate-text keys).
    params: the parameters differentiated.
    batch: dict of [B, ...] arrays, split over `data_axis` of `mesh` if given.
    rng: the step's key; micro-batch k uses `jax.random.split(rng, K)[k]` in
      both of its passes.
    num_microbatches: K >= 1.
    mesh: the device mesh, to keep micro-batches split over every device;
      None for unsharded arrays.
    data_axis: the mesh axis the batch is split over.

  Returns:
    ((loss [], (aux, state)), grads): as `jax.value_and_grad(..., has_aux=True)`
    of the whole-batch loss; grads has the structure of params.
  """
  num_shards = 1 if mesh is None else mesh.shape[data_axis]
  micro_batches = to_microbatches(batch, num_microbatches, num_shards)
  if mesh is not None:
    spread = NamedSharding(mesh, P(None, data_axis))
    micro_batches = jax.lax.with_sharding_constraint(
        micro_batches, jax.tree.map(lambda _: spread, micro_batches))
  rngs = jax.random.split(rng, num_microbatches)

  # 1. Embeddings only: nothing here is differentiated, so the scan keeps no
  # activations, only its [K, B / K, d] outputs.
  def embed_only(inputs):
    micro_batch, micro_rng = inputs
    return embed_fn(params, micro_batch, micro_rng)[0]
  embeddings = jax.lax.map(embed_only, (micro_batches, rngs))

  # 2. The whole batch's loss; its gradient with respect to the embeddings is
  # the cache.
  (loss, aux), (loss_grads, cotangents) = jax.value_and_grad(
      loss_fn, argnums=(0, 1), has_aux=True)(
          params, from_microbatches(embeddings, num_shards), batch)
  cotangents = to_microbatches(cotangents, num_microbatches, num_shards)

  # 3. Per micro-batch: the towers again, with the same rng, and their vjp.
  def backward(grads, inputs):
    micro_batch, micro_rng, cotangent = inputs
    _, pull_back, state = jax.vjp(lambda p: embed_fn(p, micro_batch, micro_rng), params,
                                  has_aux=True)
    (micro_grads,) = pull_back(cotangent)
    return jax.tree.map(jnp.add, grads, micro_grads), state
  grads, states = jax.lax.scan(backward, loss_grads, (micro_batches, rngs, cotangents))
  # BatchNorm: each micro-batch normalises by its own statistics (as under
  # gradient accumulation); the running averages are updated once per step,
  # by the mean over micro-batches of what each recomputation pass made of
  # the step's old averages, i.e. one EMA step towards the mean of the
  # micro-batch statistics, not K steps. The embedding pass's updates are
  # dropped.
  state = jax.tree.map(lambda s: jnp.mean(s, axis=0).astype(s.dtype), states)
  return (loss, (aux, state)), grads
