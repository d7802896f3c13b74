"""The evaluation report: `metrics.json`, a markdown page and PNG plots.

The page puts every figure beside its baseline: chance for tagging (AUC 0.5,
PR-AUC the tag's frequency) and retrieval (the mAP of a random ranking), the
mean-pooled MiniLM for text triplets. The headline lines are the demo's bars:
zero-shot instrument-family AUC-ROC (at least 0.90) and text-to-music mAP
(at least 3x chance).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

ZERO_SHOT_BAR = 0.90
RETRIEVAL_BAR = 3.0


def _families(results: dict[str, float], prefix: str) -> list[str]:
  pattern = re.compile(rf"^{prefix}/([^/]+)/auc_roc$")
  return [m.group(1) for k in results if (m := pattern.match(k))]


def headline(results: dict[str, float]) -> list[str]:
  """One line per demo bar that the results can speak to, with pass or fail."""
  lines = []
  auc = results.get("zero_shot/instrument_families/auc_roc")
  if auc is not None:
    lines.append(f"zero-shot instrument-family AUC-ROC {auc:.3f} (bar {ZERO_SHOT_BAR:.2f}: "
                 f"{'met' if auc >= ZERO_SHOT_BAR else 'NOT met'}; chance 0.5)")
  mean_ap, chance = results.get("text_to_music/all/map"), results.get("text_to_music/chance_map")
  if mean_ap is not None and chance:
    ratio = mean_ap / chance
    lines.append(f"text-to-music mAP {mean_ap:.3f} = {ratio:.1f}x chance {chance:.3f} "
                 f"(bar {RETRIEVAL_BAR:.0f}x: {'met' if ratio >= RETRIEVAL_BAR else 'NOT met'})")
  accuracy = results.get("text_triplets/accuracy")
  if accuracy is not None:
    baseline = results.get("text_triplets/accuracy_minilm_mean_pooled")
    lines.append(f"text triplet accuracy {accuracy:.3f}" + (
        f" (mean-pooled MiniLM {baseline:.3f}; chance 0.5)" if baseline is not None else ""))
  return lines


def _fmt(value: float | None, digits: int = 3) -> str:
  return "–" if value is None else f"{value:.{digits}f}"


def _tagging_plot(results: dict[str, float], path: str) -> bool:
  families = sorted(set(_families(results, "zero_shot")) | set(_families(results,
                                                                         "linear_probe")))
  if not families:
    return False
  fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(families)), 3.6))
  width = 0.38
  for offset, (prefix, label) in enumerate((("zero_shot", "zero-shot"),
                                            ("linear_probe", "linear probe"))):
    values = [results.get(f"{prefix}/{f}/auc_roc", float("nan")) for f in families]
    ax.bar([i + (offset - 0.5) * width for i in range(len(families))], values, width,
           label=label)
  ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
  ax.axhline(ZERO_SHOT_BAR, color="tab:red", linestyle=":", linewidth=1,
             label=f"demo bar {ZERO_SHOT_BAR}")
  ax.set_xticks(range(len(families)), [f.replace("_", "\n") for f in families], fontsize=8)
  ax.set_ylim(0.3, 1.12)
  ax.set_ylabel("class-balanced AUC-ROC")
  ax.set_title("Tagging per attribute family")
  ax.legend(fontsize=7, loc="upper center", ncol=4, frameon=False)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def _retrieval_plot(results: dict[str, float], path: str) -> bool:
  kinds = [m.group(1) for k in results if (m := re.match(r"^text_to_music/([^/]+)/map$", k))]
  chance = results.get("text_to_music/chance_map")
  if not kinds or chance is None:
    return False
  fig, ax = plt.subplots(figsize=(4.8, 3.4))
  ax.bar(kinds, [results[f"text_to_music/{k}/map"] for k in kinds], color="tab:green")
  ax.axhline(chance, color="gray", linestyle="--", linewidth=1, label=f"chance {chance:.3f}")
  ax.axhline(RETRIEVAL_BAR * chance, color="tab:red", linestyle=":", linewidth=1,
             label=f"demo bar {RETRIEVAL_BAR:.0f}x chance")
  ax.set_ylabel("mAP")
  ax.set_title("Text-to-music retrieval by query kind")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def write(results: dict[str, float], out_dir: str, info: dict[str, Any]) -> dict[str, str]:
  """Writes metrics.json, report.md and the plots; returns their paths by name.

  Args:
    results: metric name -> value, as the evaluators yield them.
    out_dir: created if missing.
    info: what was evaluated (workdir, step, dataset, split, command), shown on
      top of the page and saved in metrics.json.
  """
  os.makedirs(out_dir, exist_ok=True)
  paths = {"metrics": os.path.join(out_dir, "metrics.json"),
           "report": os.path.join(out_dir, "report.md")}
  with open(paths["metrics"], "w") as f:
    json.dump({"info": info, "metrics": results}, f, indent=1, sort_keys=True)
  plots = {}
  if _tagging_plot(results, os.path.join(out_dir, "tagging.png")):
    plots["tagging"] = "tagging.png"
  if _retrieval_plot(results, os.path.join(out_dir, "retrieval.png")):
    plots["retrieval"] = "retrieval.png"

  lines = ["# Evaluation report", ""]
  lines += [f"- **{k}**: `{v}`" for k, v in info.items()]
  lines += ["", "## Headline", ""] + [f"- {line}" for line in headline(results)]
  families = sorted(set(_families(results, "zero_shot")) | set(_families(results,
                                                                         "linear_probe")))
  if families:
    lines += ["", "## Tagging (class-balanced over tags)", "",
              "| family | tags | zero-shot AUC-ROC | zero-shot PR-AUC | PR-AUC chance "
              "| linear-probe AUC-ROC |", "|---|---|---|---|---|---|"]
    for f in families:
      tags = results.get(f"zero_shot/{f}/num_tags")
      lines.append(
          f"| {f} | {'–' if tags is None else int(tags)} | "
          f"{_fmt(results.get(f'zero_shot/{f}/auc_roc'))} | "
          f"{_fmt(results.get(f'zero_shot/{f}/pr_auc'))} | "
          f"{_fmt(results.get(f'zero_shot/{f}/pr_auc_chance'))} | "
          f"{_fmt(results.get(f'linear_probe/{f}/auc_roc'))} |")
    lines.append("")
    lines.append("AUC-ROC chance is 0.5. Zero-shot: cosine of the audio embedding "
                 "(mean of 10-s windows) and the tag's text embedding. Linear probe: "
                 "one logistic regression per tag on frozen embeddings of the train split.")
    if "tagging" in plots:
      lines += ["", f"![tagging]({plots['tagging']})"]
  kinds = [m.group(1) for k in results if (m := re.match(r"^text_to_music/([^/]+)/map$", k))]
  if kinds:
    ks = sorted({int(m.group(1)) for k in results
                 if (m := re.match(r"^text_to_music/all/recall@(\d+)$", k))})
    lines += ["", "## Text-to-music retrieval", "",
              f"Queries: {int(results.get('text_to_music/num_queries', 0))}, from attribute "
              "values; every recording with those values is relevant (mean "
              f"{_fmt(results.get('text_to_music/mean_relevant'), 1)}). Chance mAP (random "
              f"ranking) {_fmt(results.get('text_to_music/chance_map'))}.", "",
              "| queries | mAP | AUC-ROC | " + " | ".join(f"recall@{k}" for k in ks) + " |",
              "|---|---|---|" + "---|" * len(ks)]
    for kind in kinds:
      lines.append(f"| {kind} | {_fmt(results[f'text_to_music/{kind}/map'])} | "
                   f"{_fmt(results.get(f'text_to_music/{kind}/auc_roc'))} | " + " | ".join(
                       _fmt(results.get(f"text_to_music/{kind}/recall@{k}")) for k in ks)
                   + " |")
    if "retrieval" in plots:
      lines += ["", f"![retrieval]({plots['retrieval']})"]
  if "text_triplets/accuracy" in results:
    lines += ["", "## Text triplets (AudioSet music ontology)", "",
              "| text embedding | accuracy |", "|---|---|",
              f"| this model's text tower | {_fmt(results['text_triplets/accuracy'])} |"]
    if "text_triplets/accuracy_minilm_mean_pooled" in results:
      lines.append("| all-MiniLM-L6-v2, mean-pooled (untuned) | "
                   f"{_fmt(results['text_triplets/accuracy_minilm_mean_pooled'])} |")
    lines.append("| chance | 0.500 |")
    lines.append("")
    lines.append(f"{int(results.get('text_triplets/num_triplets', 0))} triplets: class "
                 "name (anchor), its description (positive), another class's description "
                 "(negative).")
  with open(paths["report"], "w") as f:
    f.write("\n".join(lines) + "\n")
  paths.update({name: os.path.join(out_dir, file) for name, file in plots.items()})
  return paths
