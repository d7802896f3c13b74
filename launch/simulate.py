r"""Runs a session simulation study: strategies compared over simulated sessions.

  python -m launch.simulate --config=configs/session_study.py --output_dir=/tmp/study
  python -m launch.simulate --config=configs/session_study.py:library=demo \
      --config.library.index=workdirs/demo/library_train.npz \
      --config.library.text_workdir=workdirs/demo --output_dir=workdirs/demo/study

Writes results.npz, summary.json (means with paired bootstrap 95% CIs),
report.md and PNG plots to --output_dir, and prints the headline figures. The
work is `jplaylist.session.study.run_from_config`; this file is intentionally
kept short.
"""

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from jplaylist.session import study

_CONFIG = config_flags.DEFINE_config_file("config", None, "Study config file.",
                                          lock_config=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where results and the report go.")
flags.mark_flags_as_required(["config", "output_dir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  jax.config.update("jax_transfer_guard", "allow")
  summary, paths = study.run_from_config(_CONFIG.value, _OUTPUT_DIR.value)
  print()
  for line in study.headline(summary):
    print(line)
  print(f"\nSummary: {paths['summary']}\nReport: {paths['report']}")


if __name__ == "__main__":
  app.run(main)
