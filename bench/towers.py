r"""Step time, XLA FLOPs and achieved FLOP/s of every tower variant.

  python -m bench.towers                       # all variants, batch 2
  python -m bench.towers --towers=resnet:50,ast:base --batch=8

For each variant: forward (eval) and forward+backward (train mode, gradient
of a scalar of the embeddings) step time, the FLOP count XLA reports for the
compiled step, and achieved FLOP/s against a matmul roofline (the best FLOP/s
of a large f32 matmul, measured in the same run on the same device).
Audio towers see 10-s log-mel windows (400 frames x 64 or 128 mels), the
text tower 64 tokens.
"""

import functools

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from bench import roofline
from jplaylist.models import ast
from jplaylist.models import bert
from jplaylist.models import resnet

_TOWERS = flags.DEFINE_list(
    "towers", ["resnet:tiny", "resnet:18", "resnet:50", "ast:tiny", "ast:base",
               "bert:tiny", "bert:minilm-l6", "bert:base"], "tower:variant pairs.")
_BATCH = flags.DEFINE_integer("batch", 2, "Examples per step.")
_TEXT_LENGTH = flags.DEFINE_integer("text_length", 64, "Tokens per text.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions (best is kept).")


def _build(tower: str, variant: str, batch: int, text_length: int):
  """(model, inputs, init rngs, mutable collections, train rngs) for one variant."""
  if tower == "resnet":
    return resnet.Model(variant), (jnp.zeros((batch, 400, 64)),), ["batch_stats"]
  if tower == "ast":
    return ast.Model(variant), (jnp.zeros((batch, 400, 128)),), []
  if tower == "bert":
    ids = jnp.ones((batch, text_length), jnp.int32)
    return bert.Model(variant), (ids, jnp.ones_like(ids)), []
  raise ValueError(f"unknown tower {tower!r}")


def measure(tower: str, variant: str, batch: int, text_length: int, repeats: int):
  model, inputs, mutable = _build(tower, variant, batch, text_length)
  variables = jax.jit(model.init)(jax.random.key(0), *inputs)
  params = variables["params"]
  others = {k: v for k, v in variables.items() if k != "params"}
  rngs = {"dropout": jax.random.key(1)}

  def forward(params, *inputs):
    return model.apply({"params": params, **others}, *inputs)

  def loss(params, *inputs):
    out = model.apply({"params": params, **others}, *inputs, train=True, rngs=rngs,
                      mutable=mutable or False)
    out = out[0] if mutable else out
    return jnp.sum(out[:, 0])

  results = {"params": sum(x.size for x in jax.tree_util.tree_leaves(params))}
  for name, fn in (("forward", forward), ("forward+backward", jax.grad(loss))):
    compiled = jax.jit(fn).lower(params, *inputs).compile()
    seconds = roofline.best_time(functools.partial(compiled, params, *inputs), repeats)
    results[name] = (seconds, roofline.flops(compiled))
  return results


def main(argv):
  del argv
  device = jax.devices()[0]
  peak = roofline.matmul_roofline()
  print(f"device {device.device_kind} ({device.platform}); batch {_BATCH.value}; "
        f"matmul roofline (f32 2048^3) {peak / 1e9:.1f} GFLOP/s")
  header = (f"{'tower':<16}{'params':>12}  {'step':<17}{'time ms':>10}"
            f"{'GFLOP':>10}{'GFLOP/s':>10}{'of roofline':>13}")
  print(header)
  for spec in _TOWERS.value:
    tower, variant = spec.split(":")
    results = measure(tower, variant, _BATCH.value, _TEXT_LENGTH.value, _REPEATS.value)
    for step in ("forward", "forward+backward"):
      seconds, flops = results[step]
      rate = flops / seconds
      print(f"{spec:<16}{results['params']:>12,}  {step:<17}{seconds * 1e3:>10.1f}"
            f"{flops / 1e9:>10.2f}{rate / 1e9:>10.1f}{rate / peak:>12.0%}")


if __name__ == "__main__":
  app.run(main)
