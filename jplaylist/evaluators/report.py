"""The evaluation report: `metrics.json`, a markdown page and PNG plots.

The page puts every figure beside its baseline: chance for tagging (AUC 0.5,
PR-AUC the tag's frequency) and retrieval (the mAP of a random ranking), the
mean-pooled MiniLM for text triplets. Where the run's config gives targets
(`targets.py`), the page opens with each targeted figure beside its bar, met
or not and by how much. Several splits (say the test split and a held-out
soundfont) go in one page: a comparison table with a column per split, then
each split's details; the per-tag AUC-ROCs are on the page and in
metrics.json. `training_summary` is the short line a training log prints.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

# pylint: disable-next=g-import-not-at-top,wrong-import-position
from jplaylist.evaluators import targets as targets_lib

Results = Mapping[str, float]
# Figures worth a row of the cross-split comparison (family means, not tags).
_SUMMARY = re.compile(r"^(zero_shot|zero_shot_vocab|linear_probe)/[^/]+/auc_roc$|"
                      r"^text_to_music/[^/]+/map$|^text_to_music/chance_map$|"
                      r"^captions/(text_to_music|music_to_text)/(recall@\d+|median_rank)$|"
                      r"^text_triplets/accuracy(_minilm_mean_pooled)?$")
_PER_TAG = re.compile(r"^(zero_shot|zero_shot_vocab)/([^/]+)/tag/(.+)/auc_roc$")


def _families(results: Results, prefix: str) -> list[str]:
  pattern = re.compile(rf"^{prefix}/([^/]+)/auc_roc$")
  return [m.group(1) for k in results if (m := pattern.match(k))]


def _fmt(value: float | None, digits: int = 3) -> str:
  return "–" if value is None else f"{value:.{digits}f}"


def summary_metrics(results: Results) -> dict[str, float]:
  """The family-level figures of `results`: means per family, mAPs, R@k, triplets."""
  return {k: v for k, v in results.items() if _SUMMARY.match(k)}


def training_summary(results: Results) -> str:
  """One log line of family means (per-tag AUCs stay in metrics, not on stdout)."""
  return ", ".join(f"{k} {v:.4f}" for k, v in summary_metrics(results).items())


def headline(results: Results, targets: Sequence[targets_lib.Target] = ()) -> list[str]:
  """One line per target (value, bar, met or not, how far); without targets,
  the main figures beside chance."""
  if targets:
    return [c.line() for c in targets_lib.check(targets, results)]
  lines = []
  auc = results.get("zero_shot/instrument_families/auc_roc")
  if auc is not None:
    lines.append(f"zero-shot instrument-family AUC-ROC {auc:.3f} (chance 0.5)")
  mean_ap, chance = results.get("text_to_music/all/map"), results.get("text_to_music/chance_map")
  if mean_ap is not None and chance:
    lines.append(f"text-to-music mAP {mean_ap:.3f} = {mean_ap / chance:.1f}x chance "
                 f"{chance:.3f}")
  accuracy = results.get("text_triplets/accuracy")
  if accuracy is not None:
    baseline = results.get("text_triplets/accuracy_minilm_mean_pooled")
    lines.append(f"text triplet accuracy {accuracy:.3f}" + (
        f" (mean-pooled MiniLM {baseline:.3f}; chance 0.5)" if baseline is not None else ""))
  return lines


def _target_of(targets: Sequence[targets_lib.Target], metric: str, ratio: bool):
  return next((t for t in targets if t.metric == metric and bool(t.over) == ratio), None)


def _tagging_plot(results: Results, path: str, targets: Sequence[targets_lib.Target],
                  title: str) -> bool:
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
  labelled = False
  for i, family in enumerate(families):
    target = _target_of(targets, f"zero_shot/{family}/auc_roc", ratio=False)
    if target is not None:
      ax.hlines(target.at_least, i - width, i + width, color="tab:red", linewidth=2,
                label=None if labelled else "zero-shot target")
      labelled = True
  ax.set_xticks(range(len(families)), [f.replace("_", "\n") for f in families], fontsize=8)
  ax.set_ylim(0.3, 1.12)
  ax.set_ylabel("class-balanced AUC-ROC")
  ax.set_title(title)
  ax.legend(fontsize=7, loc="upper center", ncol=4, frameon=False)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def _retrieval_plot(results: Results, path: str, targets: Sequence[targets_lib.Target],
                    title: str) -> bool:
  kinds = [m.group(1) for k in results if (m := re.match(r"^text_to_music/([^/]+)/map$", k))]
  chance = results.get("text_to_music/chance_map")
  if not kinds or chance is None:
    return False
  fig, ax = plt.subplots(figsize=(4.8, 3.4))
  ax.bar(kinds, [results[f"text_to_music/{k}/map"] for k in kinds], color="tab:green")
  ax.axhline(chance, color="gray", linestyle="--", linewidth=1, label=f"chance {chance:.3f}")
  target = _target_of(targets, "text_to_music/all/map", ratio=True)
  if target is not None:
    base = results.get(target.over)
    if base:
      ax.axhline(target.at_least * base, color="tab:red", linestyle=":", linewidth=1,
                 label=f"target {target.at_least:g}x chance")
  ax.set_ylabel("mAP")
  ax.set_title(title)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def _targets_table(by_split: Mapping[str, Results],
                   targets: Sequence[targets_lib.Target]) -> list[str]:
  names = list(by_split)
  checks = {s: targets_lib.check(targets, r) for s, r in by_split.items()}
  lines = ["| figure | target | " + " | ".join(f"{s} | met" for s in names) + " |",
           "|---|---|" + "---|---|" * len(names)]
  for i, target in enumerate(targets):
    cells = []
    for s in names:
      c = checks[s][i]
      cells.append(f"{c.value_text()} | {c.verdict()}")
    lines.append(f"| {target.label} | {target.bar_text()} | " + " | ".join(cells) + " |")
  return lines


def _comparison_table(by_split: Mapping[str, Results]) -> list[str]:
  names = list(by_split)
  rows = list(dict.fromkeys(k for r in by_split.values() for k in summary_metrics(r)))
  lines = ["| figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
  for row in rows:
    lines.append(f"| {row} | " + " | ".join(_fmt(by_split[s].get(row)) for s in names) + " |")
  return lines


def _per_tag_table(by_split: Mapping[str, Results]) -> list[str]:
  names = list(by_split)
  rows = list(dict.fromkeys((m.group(1), m.group(2), m.group(3))
                            for r in by_split.values() for k in r if (m := _PER_TAG.match(k))))
  if not rows:
    return []
  lines = ["| family | tag | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
  for prefix, family, tag in rows:
    key = f"{prefix}/{family}/tag/{tag}/auc_roc"
    family_name = family if prefix == "zero_shot" else f"{family} (vocabulary)"
    lines.append(f"| {family_name} | {tag} | " + " | ".join(
        _fmt(by_split[s].get(key)) for s in names) + " |")
  return lines


def _split_sections(results: Results, plots: Mapping[str, str], level: str) -> list[str]:
  """The detailed tables of one split's results (tagging, retrieval, triplets)."""
  lines = []
  families = sorted(set(_families(results, "zero_shot")) | set(_families(results,
                                                                         "linear_probe")))
  if families:
    lines += ["", f"{level} Tagging (class-balanced over tags)", "",
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
    lines += ["", f"{level} Text-to-music retrieval", "",
              f"Queries: {int(results.get('text_to_music/num_queries', 0))}, from attribute "
              "values; every recording with those values is relevant (mean "
              f"{_fmt(results.get('text_to_music/mean_relevant'), 1)}). Chance mAP (random "
              f"ranking) {_fmt(results.get('text_to_music/chance_map'))}.", "",
              "| " + " | ".join(["queries", "mAP", "AUC-ROC"] + [f"recall@{k}" for k in ks])
              + " |", "|---|---|---|" + "---|" * len(ks)]
    for kind in kinds:
      cells = [kind, _fmt(results[f"text_to_music/{kind}/map"]),
               _fmt(results.get(f"text_to_music/{kind}/auc_roc"))]
      cells += [_fmt(results.get(f"text_to_music/{kind}/recall@{k}")) for k in ks]
      lines.append("| " + " | ".join(cells) + " |")
    if "retrieval" in plots:
      lines += ["", f"![retrieval]({plots['retrieval']})"]
  if "text_triplets/accuracy" in results:
    lines += ["", f"{level} Text triplets (AudioSet music ontology; the same on every split)",
              "", "| text embedding | accuracy |", "|---|---|",
              f"| this model's text tower | {_fmt(results['text_triplets/accuracy'])} |"]
    if "text_triplets/accuracy_minilm_mean_pooled" in results:
      lines.append("| all-MiniLM-L6-v2, mean-pooled (untuned) | "
                   f"{_fmt(results['text_triplets/accuracy_minilm_mean_pooled'])} |")
    lines.append("| chance | 0.500 |")
    lines.append("")
    lines.append(f"{int(results.get('text_triplets/num_triplets', 0))} triplets: class "
                 "name (anchor), its description (positive), another class's description "
                 "(negative).")
  return lines


def _render(by_split: Mapping[str, Results], out_dir: str, info: dict[str, Any],
            targets: Sequence[targets_lib.Target], metrics_json: dict[str, Any]
            ) -> dict[str, str]:
  os.makedirs(out_dir, exist_ok=True)
  paths = {"metrics": os.path.join(out_dir, "metrics.json"),
           "report": os.path.join(out_dir, "report.md")}
  metrics_json["targets"] = {s: [c.as_dict() for c in targets_lib.check(targets, r)]
                             for s, r in by_split.items()}
  with open(paths["metrics"], "w") as f:
    json.dump(metrics_json, f, indent=1, sort_keys=True)
  several = len(by_split) > 1
  lines = ["# Evaluation report", ""]
  lines += [f"- **{k}**: `{v}`" for k, v in info.items()]
  if targets:
    lines += ["", "## Targets", "", *_targets_table(by_split, targets), "",
              "Each figure beside its target (from the run's config `targets`); a ratio "
              "target is a multiple of the baseline measured on the same split."]
  elif not several:
    lines += ["", "## Headline", ""] + [f"- {l}" for l in headline(next(iter(
        by_split.values())))]
  if several:
    lines += ["", "## Figures by split", "", *_comparison_table(by_split)]
  for split, results in by_split.items():
    suffix = f"_{re.sub(r'[^A-Za-z0-9_.-]', '_', split)}" if several else ""
    title = f" ({split})" if several else ""
    plots = {}
    if _tagging_plot(results, os.path.join(out_dir, f"tagging{suffix}.png"), targets,
                     "Tagging per attribute family" + title):
      plots["tagging"] = f"tagging{suffix}.png"
    if _retrieval_plot(results, os.path.join(out_dir, f"retrieval{suffix}.png"), targets,
                       "Text-to-music retrieval by query kind" + title):
      plots["retrieval"] = f"retrieval{suffix}.png"
    if several:
      lines += ["", f"## Split `{split}`"]
    lines += _split_sections(results, plots, "###" if several else "##")
    paths.update({f"{name}{suffix}": os.path.join(out_dir, file)
                  for name, file in plots.items()})
  per_tag = _per_tag_table(by_split)
  if per_tag:
    lines += ["", "## Zero-shot AUC-ROC per tag", "", *per_tag]
  with open(paths["report"], "w") as f:
    f.write("\n".join(lines) + "\n")
  return paths


def write(results: Results, out_dir: str, info: dict[str, Any],
          targets: Sequence[targets_lib.Target] = ()) -> dict[str, str]:
  """Writes metrics.json, report.md and the plots of one split; returns their paths.

  Args:
    results: metric name -> value, as the evaluators yield them.
    out_dir: created if missing.
    info: what was evaluated (workdir, step, dataset, split, command), shown on
      top of the page and saved in metrics.json.
    targets: bars to show the figures against (`targets.parse`).
  """
  return _render({str(info.get("split", "")): results}, out_dir, info, targets,
                 {"info": info, "metrics": dict(results)})


def write_splits(by_split: Mapping[str, Results], out_dir: str, info: dict[str, Any],
                 targets: Sequence[targets_lib.Target] = ()) -> dict[str, str]:
  """Writes one report of several splits: a comparison table, then each split.

  metrics.json holds {"info", "metrics_by_split": {split: {name: value}},
  "targets": {split: [checks]}}; plots are named `tagging_<split>.png`.
  """
  if not by_split:
    raise ValueError("write_splits: no split results to write")
  if len(by_split) == 1:
    split, results = next(iter(by_split.items()))
    return write(results, out_dir, {**info, "split": split}, targets)
  return _render(by_split, out_dir, info, targets,
                 {"info": info, "metrics_by_split": {s: dict(r) for s, r in by_split.items()}})
