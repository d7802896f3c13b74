r"""Evaluates a trained model: zero-shot tagging, linear probes, retrieval, triplets.

  python -m launch.evaluate --workdir=workdirs/demo                  # test split
  python -m launch.evaluate --workdir=workdirs/demo --split=test,test_heldout_timbre
  python -m launch.evaluate --workdir=workdirs/demo --split=validation --step=400 \
      --evals=zero_shot,text_to_music --targets_from=configs/demo.py

A run of the self-supervised adversarial trainer (`config.trainer =
"adversarial"`, issue 14) gets its own report instead
(`evaluators.self_supervised`): adjacency on held-out compositions, distance
to the prior, query by example and linear probes, beside the contrastive
model of --compare_workdir when given.

  python -m launch.evaluate --workdir=workdirs/adjacency --compare_workdir=workdirs/demo

A run of the user-anchored trainer (`config.trainer = "user_anchored"`, issue
16) gets its AUC, precision and fan-recall report and its audio embeddings
exported as a library index (`evaluators.user_anchored`); --split is unused.

Writes `metrics.json`, `report.md` and PNG plots to
`<workdir>/eval/<split>[+<split>...]_step<step>/` (or --output_dir): with
several splits, one report whose tables have a column per split. Figures are
shown beside the targets of the run's config (`config.targets`), or of the
config file given by --targets_from. The work is
`evaluators.suite.evaluate_splits`; this file is intentionally kept short.
"""

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from jplaylist import checkpoint
from jplaylist.evaluators import self_supervised
from jplaylist.evaluators import suite
from jplaylist.evaluators import user_anchored

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir of the model.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_SPLIT = flags.DEFINE_string("split", "test", "Split(s) of the run's dataset to evaluate "
                             "on, comma-separated: one report compares them.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Where the dataset is built (default: the run's).")
_EVALS = flags.DEFINE_list("evals", list(suite.KINDS),
                           f"Evaluators to run, of {sorted(suite.KINDS)}.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Report folder (default: <workdir>/eval/<splits>_step<N>).")
_TARGETS_FROM = config_flags.DEFINE_config_file(
    "targets_from", None, "A config file whose `targets` replace the run's, e.g. "
    "configs/demo.py (for runs saved before their config had targets).")
_COMPARE = flags.DEFINE_string(
    "compare_workdir", None, "Self-supervised runs: a contrastive run whose embedding the "
    "probes and query by example also score.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  jax.config.update("jax_transfer_guard", "allow")
  saved = checkpoint.Checkpointer(_WORKDIR.value).saved_config(_STEP.value) or {}
  if saved.get("trainer") == "adversarial":
    results, paths = self_supervised.evaluate(
        _WORKDIR.value, data_dir=_DATA_DIR.value, step=_STEP.value,
        output_dir=_OUTPUT_DIR.value, compare_workdir=_COMPARE.value,
        test_split=suite.parse_splits(_SPLIT.value)[0])
    print(f"\n{len(results)} metrics: {paths['metrics']}\nReport: {paths['report']}")
    return
  if saved.get("trainer") == "user_anchored":
    _, paths = user_anchored.evaluate(_WORKDIR.value, step=_STEP.value,
                                      output_dir=_OUTPUT_DIR.value, data_dir=_DATA_DIR.value)
    print(f"\nMetrics: {paths['metrics']}\nReport: {paths['report']}\n"
          f"Audio embeddings (library index): {paths['embeddings']}")
    return
  targets = None
  if _TARGETS_FROM.value is not None:
    if "targets" not in _TARGETS_FROM.value:
      raise app.UsageError("--targets_from: that config has no `targets` field")
    targets = _TARGETS_FROM.value.targets
  by_split, paths = suite.evaluate_splits(
      _WORKDIR.value, splits=suite.parse_splits(_SPLIT.value), step=_STEP.value,
      data_dir=_DATA_DIR.value, kinds=tuple(_EVALS.value), output_dir=_OUTPUT_DIR.value,
      targets=targets)
  print(f"\n{sum(len(r) for r in by_split.values())} metrics over {len(by_split)} "
        f"split(s): {paths['metrics']}")
  print(f"Report: {paths['report']}")


if __name__ == "__main__":
  app.run(main)
