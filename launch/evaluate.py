r"""Evaluates a trained model: zero-shot tagging, linear probes, retrieval, triplets.

  python -m launch.evaluate --workdir=workdirs/demo                  # test split
  python -m launch.evaluate --workdir=workdirs/demo --split=validation --step=400 \
      --evals=zero_shot,text_to_music

Writes `metrics.json`, `report.md` and PNG plots to
`<workdir>/eval/<split>_step<step>/` (or --output_dir) and prints the headline
figures beside the demo's bars. The work is `evaluators.suite.evaluate_workdir`;
this file is intentionally kept short.
"""

from absl import app
from absl import flags
import jax

from jplaylist.evaluators import suite

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir of the model.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_SPLIT = flags.DEFINE_string("split", "test", "Split of the run's dataset to evaluate on.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Where the dataset is built (default: the run's).")
_EVALS = flags.DEFINE_list("evals", list(suite.KINDS),
                           f"Evaluators to run, of {sorted(suite.KINDS)}.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Report folder (default: <workdir>/eval/<split>_step<N>).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  jax.config.update("jax_transfer_guard", "allow")
  results, paths = suite.evaluate_workdir(
      _WORKDIR.value, step=_STEP.value, split=_SPLIT.value, data_dir=_DATA_DIR.value,
      kinds=tuple(_EVALS.value), output_dir=_OUTPUT_DIR.value)
  print()
  for line in suite.report.headline(results):
    print(line)
  print(f"\n{len(results)} metrics: {paths['metrics']}")
  print(f"Report: {paths['report']}")


if __name__ == "__main__":
  app.run(main)
