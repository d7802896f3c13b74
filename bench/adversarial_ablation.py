r"""The ablation table of self-supervised runs: one row per evaluated run.

  python -m bench.adversarial_ablation \
      --runs="adjacency, prior=/tmp/adv/adj3;adjacency, no prior=/tmp/adv/adj3_noprior" \
      --compare=/tmp/adv/adj3

Each run must have been evaluated (`launch.evaluate --workdir=RUN`, its latest
report under RUN/eval/<split>_step<N>/metrics.json). Prints a markdown table of
the report's headline figures (issue 14: form, prior and similarity
ablations), a row for the contrastive model when the run named by --compare
was evaluated with --compare_workdir, and the chance levels.
"""

import glob
import json
import os

from absl import app
from absl import flags

_RUNS = flags.DEFINE_string("runs", None, "label=workdir pairs separated by ';'.")
_COMPARE = flags.DEFINE_string("compare", None, "A run whose report has contrastive/ rows.")
_SPLIT = flags.DEFINE_string("split", "test", "The evaluated split.")
flags.mark_flag_as_required("runs")

COLUMNS = (("adjacency AUC", "adjacency/auc_roc"), ("R@1", "adjacency/r_at_1"),
           ("mean abs mean", "prior/mean_abs_mean"), ("mean variance", "prior/mean_variance"),
           ("MMD^2", "prior/mmd2"), ("p", "prior/mmd2_p_value"),
           ("QbE mAP", "query_by_example/map"),
           ("QbH mAP in tune", "query_by_humming/in_tune/map"),
           ("QbH mAP off", "query_by_humming/off_key_and_tempo/map"),
           ("travel ratio", "travel/path_over_random_order"),
           ("probe families", "linear_probe/instrument_families/auc_roc"),
           ("probe style", "linear_probe/style/auc_roc"),
           ("probe tempo", "linear_probe/tempo_class/auc_roc"),
           ("probe mode", "linear_probe/mode/auc_roc"),
           ("probe mood", "linear_probe/mood/auc_roc"))


def latest_metrics(workdir: str, split: str) -> dict:
  paths = glob.glob(os.path.join(workdir, "eval", f"{split}_step*", "metrics.json"))
  if not paths:
    raise FileNotFoundError(f"{workdir}: no evaluated report for split {split!r}; run "
                            f"python -m launch.evaluate --workdir={workdir}")
  latest = max(paths, key=lambda p: int(os.path.basename(os.path.dirname(p)).rsplit("step", 1)[1]))
  with open(latest) as f:
    return json.load(f)


def row(label: str, metrics: dict, prefix: str = "") -> str:
  cells = [f"{metrics[prefix + key]:.3f}" if prefix + key in metrics else "-"
           for _, key in COLUMNS]
  return f"| {label} | " + " | ".join(cells) + " |"


def main(argv):
  del argv
  runs = [item.split("=", 1) for item in _RUNS.value.split(";") if item.strip()]
  print("| run | " + " | ".join(name for name, _ in COLUMNS) + " |")
  print("|---" * (len(COLUMNS) + 1) + "|")
  for label, workdir in runs:
    print(row(label.strip(), latest_metrics(workdir.strip(), _SPLIT.value)))
  if _COMPARE.value:
    metrics = latest_metrics(_COMPARE.value, _SPLIT.value)
    print(row("contrastive model", metrics, prefix="contrastive/"))
    print(f"\nchance mAP: query by example {metrics['query_by_example/chance_map']:.3f}, "
          f"query by humming {metrics['query_by_humming/in_tune/chance_map']:.3f} (random "
          f"embeddings {metrics['random/query_by_humming/in_tune/map']:.3f} in tune, "
          f"{metrics['random/query_by_humming/off_key_and_tempo/map']:.3f} off)")


if __name__ == "__main__":
  app.run(main)
