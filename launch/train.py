r"""Trains a model: `trainers.<config.trainer>.train_and_evaluate(config, workdir)`.

  python -m launch.train --config=configs/demo.py --workdir=workdirs/demo
  python -m launch.train --config=configs/highlights.py --workdir=workdirs/highlights
  python -m launch.train --config=configs/adversarial_adjacency.py --workdir=workdirs/adjacency
  python -m launch.train --config=configs/user_anchored.py:loss=metric,negatives=4 \
      --workdir=workdirs/ua_metric4
  python -m launch.train --config=configs/mulan.py:audio=ast --workdir=/tmp/m \
      --config.input.batch_size=64 --config.optimizer.learning_rate=1e-4

`config.trainer` picks the trainer ("contrastive" when absent, "classifier",
"adversarial", "user_anchored").
Config fields can be overridden with --config.FIELD=VALUE; the config is
locked, so a misspelled or ill-typed field is rejected with a message that
names it. Multi-host: pass --coordinator_address, --num_processes and
--process_id (or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
JAX_PROCESS_ID) and every host runs the same command. Restarting in the same
workdir resumes from the latest checkpoint, provided the config changes no
field that alters the run (--allow_config_change=optimizer.learning_rate,...
allows listed ones). SIGTERM or Ctrl-C to any host saves and stops every host
at the same step. This file is intentionally kept short.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from jplaylist import sharding
from jplaylist.trainers import adversarial
from jplaylist.trainers import classifier
from jplaylist.trainers import contrastive
from jplaylist.trainers import user_anchored

# config.trainer -> the trainer module (train_and_evaluate, eval_summary).
TRAINERS = {"contrastive": contrastive, "classifier": classifier,
            "adversarial": adversarial, "user_anchored": user_anchored}

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, TensorBoard logs, metrics.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "Multi-host: host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process.")
_ALLOW_CHANGE = flags.DEFINE_list(
    "allow_config_change", [],
    "Resuming: config fields (dotted paths or their parents) that may differ from "
    "the checkpoint's saved config, beyond checkpoint.RESUME_MAY_CHANGE.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  name = _CONFIG.value.get("trainer", "contrastive")
  if name not in TRAINERS:
    raise app.UsageError(f"config.trainer={name!r}; known: {', '.join(TRAINERS)}")
  sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  # Surface accidental host<->device copies inside the training loop.
  jax.config.update("jax_transfer_guard", "log")
  trainer = TRAINERS[name]
  result = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value,
                                      allow_config_change=tuple(_ALLOW_CHANGE.value))
  if result["preempted"]:  # every process says so: hosts log separately
    print(f"Process {jax.process_index()}: stopped at step {result['step']} "
          f"({result['stop_reason']}); run the same command to resume.", flush=True)
  if jax.process_index() == 0:
    workdir = os.path.abspath(_WORKDIR.value)
    print(f"\nTrained to step {result['step']}.")
    if result["eval"]:
      print(trainer.eval_summary(result))
    print(f"Checkpoints: {workdir}/checkpoints\n"
          f"TensorBoard: tensorboard --logdir {workdir}/tensorboard")


if __name__ == "__main__":
  app.run(main)
