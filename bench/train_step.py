r"""Training step throughput: steps/s and achieved FLOP/s of whole configs.

  python -m bench.train_step                                   # demo + full sizes
  python -m bench.train_step --configs=demo --full_batch=2

Each config's real training step (`trainers.contrastive.make_step_functions`:
frontend, both towers, sharded loss, optimizer) is jit-compiled on synthetic
batches of the config's shapes and of the pipeline's format (int16 `audio`,
int32 `audio_length`); the FLOP count is XLA's for the compiled step,
and the roofline is the best f32 matmul FLOP/s measured in the same run.
Full-size configs run at a small batch (`--full_batch`) on a CPU: the patent's
batches of 5-6K need accelerators.
"""

import functools

from absl import app
from absl import flags
import jax
import ml_collections
import numpy as np

from bench import roofline
from configs import demo as demo_config
from configs import mulan as mulan_config
from jplaylist import sharding as sharding_lib
from jplaylist.audio import frontend
from jplaylist.models import two_tower
from jplaylist.trainers import contrastive

_CONFIGS = flags.DEFINE_list(
    "configs", ["demo", "mulan:audio=resnet50", "mulan:audio=ast"],
    "Configs to measure: demo or mulan:<arg>.")
_FULL_BATCH = flags.DEFINE_integer("full_batch", 4, "Batch of the full-size configs.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed steps (best is kept).")


def _config(name: str) -> ml_collections.ConfigDict:
  if name == "demo":
    return demo_config.get_config()
  arg = name.partition(":")[2]
  config = mulan_config.get_config(arg)
  config.input.batch_size = _FULL_BATCH.value
  return config


def _batch(config, batch_size):
  preset = frontend.decode(config.model.frontend)
  rng = np.random.default_rng(0)
  samples = int(config.input.window_seconds * preset.sample_rate)
  ids = rng.integers(1000, 5000, (batch_size, config.input.max_text_length)).astype(np.int32)
  ids[:, 0] = 101
  # The pipeline's format (jplaylist/data/pipeline.py): int16 samples at full
  # scale 32768 and the real length of each row, so the step includes the
  # on-device int16 -> float32 scaling and the valid-frame mask it builds.
  audio = np.clip(rng.normal(0, 0.1 * 32768, (batch_size, samples)), -32768, 32767)
  return {"audio": audio.astype(np.int16),
          "audio_length": np.full(batch_size, samples, np.int32), "text_ids": ids,
          "text_mask": np.ones_like(ids), "source": np.zeros(batch_size, np.int32)}


def measure(config: ml_collections.ConfigDict):
  config.warm_start.text_bert = ""  # weights do not change the cost
  mesh = sharding_lib.make_mesh(tuple(tuple(a) for a in config.mesh))
  model = two_tower.build(config)
  optimizer, schedule = contrastive.make_optimizer(config)
  state = jax.jit(functools.partial(contrastive.init_train_state, model, config,
                                    optimizer))(jax.random.key(0))
  _, update = contrastive.make_step_functions(config, model, optimizer, schedule, mesh)
  batch = sharding_lib.host_batch_to_global(_batch(config, config.input.batch_size), mesh)
  rng = jax.random.key(1)
  compiled = jax.jit(update).lower(state, batch, rng).compile()
  flops = roofline.flops(compiled)
  best = roofline.best_time(lambda: compiled(state, batch, rng), _REPEATS.value)
  params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
  return params, best, flops


def main(argv):
  del argv
  peak = roofline.matmul_roofline()
  print(f"device {jax.devices()[0].device_kind}, {jax.device_count()} device(s); "
        f"matmul roofline (f32 2048^3) {peak / 1e9:.1f} GFLOP/s")
  print(f"{'config':<24}{'params':>13}{'batch':>7}{'step ms':>10}{'steps/s':>9}"
        f"{'examples/s':>12}{'GFLOP/step':>12}{'GFLOP/s':>9}{'of roofline':>13}")
  for name in _CONFIGS.value:
    config = _config(name)
    params, seconds, flops = measure(config)
    batch = config.input.batch_size
    print(f"{name:<24}{params:>13,}{batch:>7}{seconds * 1e3:>10.1f}{1 / seconds:>9.2f}"
          f"{batch / seconds:>12.1f}{flops / 1e9:>12.1f}{flops / seconds / 1e9:>9.1f}"
          f"{flops / seconds / peak:>12.0%}")


if __name__ == "__main__":
  app.run(main)
