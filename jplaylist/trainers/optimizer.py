"""The optimizer: Adam with decoupled weight decay and the patent's step decay.

The learning rate warms up linearly (optional), then decays in steps:
x`decay_rate` (0.9) every `decay_steps` (40K) steps, as the patent trains
M-ResNet-50 (initial 5e-5) and M-AST (4e-5). Weight decay is decoupled
(AdamW) and applies to the kernels of dense and convolution layers only:
biases, norm scales and offsets, embedding tables, the AST's [CLS] and
position tokens, the temperature and the loss bias are spared (`decay_mask`).
A tower can be frozen for its first N steps (its gradients are zeroed before
Adam sees them, so its moments start clean, and its updates after, so weight
decay leaves it alone), and gradients can be accumulated over k micro-batches
(optax.MultiSteps).
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jplaylist import sharding


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup to `learning_rate`, then x decay_rate every decay_steps."""
  decay = optax.exponential_decay(
      init_value=config.learning_rate, transition_steps=config.decay_steps,
      decay_rate=config.decay_rate, staircase=True)
  if not config.warmup_steps:
    return decay
  warmup = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
  return optax.join_schedules([warmup, decay], [config.warmup_steps])


# flax names the weight matrix of nn.Dense, nn.Conv and nn.DenseGeneral
# "kernel"; every other parameter of the towers is a bias, a norm's scale or
# offset, an embedding table (nn.Embed's "embedding"), a learned token
# ("cls_token", "distillation_token", "position_embeddings") or a scalar of
# the loss. Shrinking those towards zero is not a regulariser: an embedding
# row of a rare word would decay between its rare gradient updates, and a
# zero position table or norm scale means something else than "simpler".
_DECAYED_LEAF = "kernel"


def decay_mask(params) -> Any:
  """True for parameters that take weight decay: the kernels of dense and
  convolution layers, by their flax name (see `_DECAYED_LEAF`)."""
  def decays(path, leaf):
    del leaf
    return bool(path) and getattr(path[-1], "key", None) == _DECAYED_LEAF
  return jax.tree_util.tree_map_with_path(decays, params)


def freeze_until(step_count: int, pattern: str) -> optax.GradientTransformation:
  """Zeroes the updates of parameters whose path matches `pattern` for the
  first `step_count` steps.

  Args:
    step_count: steps during which the matching parameters stay frozen.
    pattern: regex on the "/"-joined parameter path, e.g. "^text/".
  """
  regex = re.compile(pattern)

  def init_fn(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    frozen = state.count < step_count

    def gate(path, update):
      if regex.search(sharding.path_str(path)):
        return jnp.where(frozen, jnp.zeros_like(update), update)
      return update
    updates = jax.tree_util.tree_map_with_path(gate, updates)
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def scale_matching(pattern: str, factor: float) -> optax.GradientTransformation:
  """Multiplies the updates of parameters whose path matches `pattern` by `factor`."""
  regex = re.compile(pattern)

  def update_fn(updates, state, params=None):
    del params
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, u: u * factor if regex.search(sharding.path_str(path)) else u, updates)
    return scaled, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


_FOREVER = 2**31 - 1


def make(config: ml_collections.ConfigDict, *, frozen: tuple[str, ...] = (),
         learning_rate_scales: tuple[tuple[str, float], ...] = ()
         ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer of `config.optimizer` and its learning-rate schedule.

  Fields: kind ("adamw", the default, or "sgd" with `momentum`),
  learning_rate, decay_steps, decay_rate, warmup_steps, b1, b2, eps,
  weight_decay, grad_clip_norm (0: none), accumulation_steps (1: none),
  freeze (list of (pattern, steps)).

  Args:
    config: the optimizer config.
    frozen: path patterns of parameters that never train.
    learning_rate_scales: (pattern, factor) pairs: the matching parameters'
      updates (Adam step and weight decay alike) are multiplied by factor.
  """
  schedule = learning_rate_schedule(config)
  freeze = [(pattern, int(steps)) for pattern, steps in config.get("freeze", ()) or ()]
  freeze += [(pattern, _FOREVER) for pattern in frozen]
  # Frozen gradients are zeroed before Adam (its moments stay clean) and the
  # updates again after it (weight decay must not shrink frozen weights).
  chain = [freeze_until(steps, pattern) for pattern, steps in freeze]
  if config.get("grad_clip_norm"):
    chain.append(optax.clip_by_global_norm(config.grad_clip_norm))
  kind = config.get("kind", "adamw")
  if kind == "adamw":
    chain.append(optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                             weight_decay=config.weight_decay, mask=decay_mask))
  elif kind == "sgd":  # the hyper-image CNN's: momentum SGD, L2 decay in the gradient
    chain += [optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
              optax.sgd(schedule, momentum=config.get("momentum", 0.9) or None)]
  else:
    raise ValueError(f"optimizer.kind={kind!r}; known: adamw, sgd")
  for pattern, factor in learning_rate_scales:
    if factor < 0:
      raise ValueError(f"learning-rate scale {factor} for {pattern!r} must be >= 0")
    if factor != 1.0:
      chain.append(scale_matching(pattern, float(factor)))
  chain += [freeze_until(steps, pattern) for pattern, steps in freeze]
  optimizer = optax.chain(*chain)
  if config.get("accumulation_steps", 1) > 1:
    optimizer = optax.MultiSteps(optimizer, every_k_schedule=config.accumulation_steps)
  return optimizer, schedule
