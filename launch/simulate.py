r"""Runs a session simulation study: strategies compared over simulated sessions.

  python -m launch.simulate --config=configs/session_study.py --output_dir=/tmp/study
  python -m launch.simulate --config=configs/session_study.py:library=demo \
      --config.library.index=workdirs/demo/library_train.npz \
      --config.library.text_workdir=workdirs/demo --output_dir=workdirs/demo/study

Every learner is tuned on some listeners and reported on others, under each
listener model of the config (`jplaylist.session.protocol`). Writes
summary.json and report.md (per model: chosen settings, the held-out table with
paired bootstrap 95% CIs against the best competitor, gain shares, ablations,
claims) and per model <model>/results.npz and PNG plots to --output_dir, and
prints the headline figures.
Several processes: pass --coordinator_address, --num_processes and
--process_id (or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
JAX_PROCESS_ID) and run the same command in each; the sessions are split over
every process's devices, and process 0 alone prints and writes the outputs.
The work is `jplaylist.session.study.run_from_config`; this file is
intentionally kept short.
"""

import tempfile

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from jplaylist import sharding
from jplaylist.session import study

_CONFIG = config_flags.DEFINE_config_file("config", None, "Study config file.",
                                          lock_config=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where results and the report go.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "Multi-process: host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process: processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process: this process.")
flags.mark_flags_as_required(["config", "output_dir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  jax.config.update("jax_transfer_guard", "allow")
  if jax.process_index() != 0:
    # Every process runs the same protocol (each `study.run` gathers all
    # records, and tuning choices must agree), but only process 0's outputs
    # are kept: the others write to a scratch directory, silently.
    with tempfile.TemporaryDirectory() as scratch:
      study.run_from_config(_CONFIG.value, scratch, log=lambda _: None)
    return
  summary, paths = study.run_from_config(_CONFIG.value, _OUTPUT_DIR.value)
  print()
  for line in study.headline(summary):
    print(line)
  print(f"\nSummary: {paths['summary']}\nReport: {paths['report']}")


if __name__ == "__main__":
  app.run(main)
