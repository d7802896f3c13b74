"""A markdown report of the adaptive-playlisting study.

Takes what `jplaylist.session.metrics` computes: `summarize` ->
`write_markdown`. The plots (`plot_curves`, `plot_adaptation`, `plot_heldout`)
are drawn by `jplaylist.session.plots`; the first two are re-exported here.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

# The plots live in `jplaylist.session.plots`; re-exported so callers keep working.
from jplaylist.session.plots import plot_adaptation  # pylint: disable=unused-import
from jplaylist.session.plots import plot_curves  # pylint: disable=unused-import


def _format(value: float | None) -> str:
  """A number with three significant decimals of the quantities of the study."""
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "n/a"
  magnitude = abs(value)
  if magnitude >= 100:
    return f"{value:.1f}"
  if magnitude >= 10:
    return f"{value:.2f}"
  return f"{value:.3f}"


def _interval(mean, lo, hi, signed: bool = False) -> str:
  text = _format(mean)
  if signed and mean is not None and mean > 0:
    text = "+" + text
  return f"{text} [{_format(lo)}, {_format(hi)}]"


def summary_lines(summary: Mapping, heading: str = "##") -> list[str]:
  """Markdown tables of a `metrics.summarize` result: means, differences, metric notes.

  Args:
    summary: from `metrics.summarize`.
    heading: markdown heading prefix of the tables' titles.
  """
  strategies = list(summary["strategies"])
  baseline = summary.get("baseline")
  level = f"{summary.get('confidence', 0.95):.0%}"
  header = "| metric | " + " | ".join(strategies) + " |"
  rule = "|---|" + "---|" * len(strategies)
  lines = [f"{heading} Means [{level} CI]", "", header, rule]
  for name, metric in summary["metrics"].items():
    cells = [_interval(metric["strategies"][s]["mean"], metric["strategies"][s]["lo"],
                       metric["strategies"][s]["hi"]) for s in strategies]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  others = [s for s in strategies if s != baseline]
  if baseline is not None and others:
    lines += ["", f"{heading} Difference vs {baseline} (paired, [{level} CI])", "",
              "`*`: the CI excludes 0.", "",
              "| metric | " + " | ".join(others) + " |", "|---|" + "---|" * len(others)]
    for name, metric in summary["metrics"].items():
      better = {True: " (higher better)", False: " (lower better)"}.get(
          metric.get("higher_is_better"), "")
      cells = []
      for s in others:
        entry = metric["strategies"][s]
        cells.append(_interval(entry["diff"], entry["diff_lo"], entry["diff_hi"], signed=True)
                     + _star(entry["diff_lo"], entry["diff_hi"]))
      lines.append(f"| {name}{better} | " + " | ".join(cells) + " |")
  lines += ["", f"{heading} Metrics", ""]
  lines += [f"- **{name}**: {metric['description']}" for name, metric in summary["metrics"].items()]
  return lines


def _star(lo, hi) -> str:
  """" *" where a CI excludes 0."""
  return " *" if lo is not None and hi is not None and (lo > 0 or hi < 0) else ""


def _plot_lines(plots: Mapping[str, str] | Sequence[str], path: str, heading: str) -> list[str]:
  items = plots.items() if isinstance(plots, Mapping) else (
      (os.path.splitext(os.path.basename(p))[0], p) for p in plots)
  directory = os.path.dirname(os.path.abspath(path))
  lines = []
  for title, plot in items:
    relative = os.path.relpath(os.path.abspath(plot), directory)
    lines += [f"{heading} {title}", "", f"![{title}]({relative})", ""]
  return lines


def _write(lines: Sequence[str], path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines).rstrip() + "\n")
  return path


def write_markdown(summary: Mapping, plots: Mapping[str, str] | Sequence[str], path: str) -> str:
  """The study's summary as markdown: a table of means, one of differences, the plots.

  Args:
    summary: from `metrics.summarize`.
    plots: title -> PNG path, or a list of PNG paths; linked relative to the
      markdown file.
    path: markdown file to write.

  Returns:
    path.
  """
  level = f"{summary.get('confidence', 0.95):.0%}"
  lines = ["# Adaptive playlisting study", "",
           f"{summary['num_sessions']} sessions x {summary['num_events']} events, "
           f"{len(summary['strategies'])} strategies. Mean per session [{level} percentile "
           f"bootstrap CI over sessions, {summary.get('num_resamples', '?')} resamples, seed "
           f"{summary.get('seed', '?')}]. Adaptation delays average over mood switches; "
           f"a delay that never ends within its segment counts as the segment's length "
           f"(censored).", ""]
  lines += summary_lines(summary)
  plot_lines = _plot_lines(plots, path, "###")
  if plot_lines:
    lines += ["", "## Plots", ""] + plot_lines
  return _write(lines, path)


def claims_markdown(rows: Sequence[Mapping], heading: str = "##") -> list[str]:
  """The patent's claims (`protocol.claims`) as a markdown table."""
  if not rows:
    return []
  lines = [f"{heading} The patent's claims, measured", "",
           "Events until adaptation after a mood switch (lower is faster); difference = "
           "adaptive minus the variant, paired over sessions [95% CI].", "",
           "| claim | metric | switches | adaptive | variant | difference [95% CI] |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['claim']} | {r['metric']} vs {r['against']} | {r['switches']} | "
                 f"{r['adaptive']:.2f} | {r['variant']:.2f} | {r['difference']:+.2f} "
                 f"[{r['lo']:+.2f}, {r['hi']:+.2f}] |")
  return lines


def _entry(section: Mapping, metric: str, name: str) -> str:
  table = section["summary"]["metrics"].get(metric)
  if table is None or name not in table["strategies"]:
    return "n/a"
  entry = table["strategies"][name]
  return _interval(entry["mean"], entry["lo"], entry["hi"])


def _row_cell(row: Mapping | None) -> str:
  if row is None:
    return "n/a"
  return _interval(row["diff"], row["lo"], row["hi"], signed=True) + _star(row["lo"], row["hi"])


def default_lines(check: Mapping | None) -> list[str]:
  """Whether the library's default strategy won (`protocol.default_check`)."""
  if not check:
    return []
  default = check["default"]
  head = f"Library default strategy (`strategies.DEFAULT_STRATEGY`): **{default}**. "
  if not check["in_study"]:
    return [head + "It was not run in this study."]
  row = check["row"]
  versus = (f"{_interval(row['diff'], row['lo'], row['hi'], signed=True)} against {row['b']}"
            if row else "no comparison row")
  if check["clear"]:
    verdict = f"It wins: the best held-out listen rate, {versus}, the CI excluding 0."
  elif check["wins"]:
    verdict = (f"It has the best held-out listen rate, but {versus}: the CI does not "
               "exclude 0, so the win is not shown.")
  else:
    verdict = (f"It does not win: it ranks {check['rank']} of {len(check['ranking'])} "
               f"non-oracle strategies; {check['top']} is best ({default} {versus}).")
  patent = ""
  if check["adaptive_rank"] is not None and check["top"] != "adaptive":
    patent = (f" The patent's adaptive classifier is not the winner here: it ranks "
              f"{check['adaptive_rank']}.")
  differ = check.get("settings_differ") or {}
  if differ:
    patent += (" It ran at its tuned setting, which differs from the library's default "
               "settings: " + ", ".join(f"{f} {tuned:g} (default {default_value:g})"
                                        for f, (default_value, tuned) in differ.items()) + ".")
  return [head + verdict + patent]


def long_term_lines(info: Mapping | None) -> list[str]:
  """The learned long-term ranker the adaptive strategies fused with (none: [])."""
  if not info:
    return []
  settings = ", ".join(f"{k}={v}" for k, v in sorted(info.get("settings", {}).items()))
  fits = "; ".join(f"{label}: {f['sequences']} sequences, {f['items']} listened tracks, "
                   f"{f['known_tracks']} of {f['num_tracks']} tracks seen"
                   for label, f in info.get("fits", {}).items())
  return ["", f"Mix ranker: **{info['kind']}** ({settings or 'default settings'}), trained "
          "on the earlier sessions of each run's listeners only (tuning and held-out "
          f"listeners apart; {fits}); tracks in no training sequence score as the mean of "
          "the seen candidates. adaptive and adaptive_mlp fuse with it; the ablations "
          "below compare it with no fusion and with the background direction."]


def protocol_lines(label: str, section: Mapping) -> list[str]:
  """One listener model's part of the report (a `protocol.run_protocol` section)."""
  summary = section["summary"]
  level = f"{summary.get('confidence', 0.95):.0%}"
  top, runner_up = section["top"], section["runner_up"]
  rates = section.get("shuffle_rates", {})
  lines = [f"## Listener model: {label}", ""]
  if rates:
    lines += [f"Shuffled playlists: {rates['early_skip']:.1%} skipped early, "
              f"{rates['skip_before_end']:.1%} before the end.", ""]
  lines += ["### Settings chosen on tuning listeners", "",
            f"{section['num_tuning_sessions']} sessions of tuning listeners; the variant with "
            "the best mean listen rate is chosen and run on "
            f"{section['num_sessions']} sessions of held-out listeners (listeners in both: "
            f"{section.get('shared_listeners', 0)}).", "",
            "| strategy | variants | chosen | tuning listen rate (chosen) | worst variant |",
            "|---|---|---|---|---|"]
  for name, entry in section["tuning"].items():
    variants = entry["variants"]
    if not variants:
      lines.append(f"| {name} | 1 | defaults (not swept) | n/a | n/a |")
      continue
    chosen = variants[entry["chosen"]]
    setting = ", ".join(f"{k}={v:g}" for k, v in entry["overrides"].items()) or "defaults"
    worst = min(v["listen_rate"] for v in variants)
    lines.append(f"| {name} | {len(variants)} | {setting} | {chosen['listen_rate']:.4f} | "
                 f"{worst:.4f} |")
  comparison = {(r["a"], r["metric"]): r for r in section["comparison"]}
  shares = section["gain_shares"]
  names = [n for n in section["names"] if "[" not in n]
  lines += ["", f"### Held-out listeners [{level} CI]", "",
            f"Best non-oracle strategy: **{top}**; runner-up: {runner_up}. Difference: the "
            f"strategy minus its best competitor ({top} against {runner_up}, every other "
            f"against {top}), paired over sessions; `*`: the CI excludes 0. Gain share: the "
            "share of the oracle's listen-rate gain over the initial order captured.", "",
            "| strategy | listen rate | skip rate | AUC | listen-rate diff vs competitor "
            "| gain share |", "|---|---|---|---|---|---|"]
  for name in names:
    row = comparison.get((name, "listen_rate"))
    against = f" (vs {row['b']})" if row else ""
    share = shares.get(name)
    share_text = _interval(share["share"], share["lo"], share["hi"]) if share else "n/a"
    lines.append(f"| {name} | {_entry(section, 'listen_rate', name)} | "
                 f"{_entry(section, 'skip_rate', name)} | {_entry(section, 'auc', name)} | "
                 f"{_row_cell(row)}{against} | {share_text} |")
  lines += [""] + default_lines(section.get("default_check"))
  lines += long_term_lines(section.get("long_term"))
  if section["ablations"]:
    lines += ["", f"### Ablations of adaptive (held-out, [{level} CI])", "",
              "Each row switches one patent component off in the chosen setting; "
              "difference = ablation minus the full method, paired over sessions.", "",
              "| ablation | switched off | listen rate | listen-rate diff | skip-rate diff |",
              "|---|---|---|---|---|"]
    by_pair = {(r["a"], r["metric"]): r for r in section["ablations"]}
    unchanged = section.get("ablations_unchanged", [])
    for name, about in section.get("ablation_info", {}).items():
      variant = f"adaptive[{name}]"
      if name in unchanged:
        lines.append(f"| {variant} | {about} | same as the method | no effect to measure: "
                     "tuning already chose this component off | |")
        continue
      listen = by_pair.get((variant, "listen_rate"))
      lines.append(f"| {variant} | {about} | {_entry(section, 'listen_rate', variant)} | "
                   f"{_row_cell(listen)} | {_row_cell(by_pair.get((variant, 'skip_rate')))} |")
  unchanged = {f"adaptive[{a}]" for a in section.get("ablations_unchanged", [])}
  claims = [r for r in section.get("claims", []) if r["against"] not in unchanged]
  lines += [""] + claims_markdown(claims, "###")
  skipped = sorted({r["against"] for r in section.get("claims", [])} & unchanged)
  if skipped:
    lines += ["", f"Claims against {', '.join(skipped)} are not measured: tuning chose that "
              "component off, so the variant is the method itself."]
  return lines


def write_protocol_markdown(summary: Mapping, plots: Mapping[str, Mapping[str, str]],
                            path: str) -> str:
  """The tuned, held-out study (`protocol.run_from_config`) as one markdown report.

  Args:
    summary: {"listener_models", "models": {model: section}}.
    plots: model -> (title -> PNG path).
    path: markdown file to write.

  Returns:
    path.
  """
  models = summary["models"]
  first = next(iter(models.values()))["summary"]
  lines = ["# Adaptive playlisting study", "",
           f"Listener models: {', '.join(models)}. Under each, every learner's settings are "
           f"swept on sessions of tuning listeners and the best (by mean listen rate) is "
           f"reported on {first['num_sessions']} sessions x {first['num_events']} events of "
           f"other, held-out listeners. Means per session [{first['confidence']:.0%} "
           f"percentile bootstrap CI over sessions, {first['num_resamples']} resamples]. "
           "Adaptation delays average over mood switches; one that never ends within its "
           "segment counts as the segment's length (censored).", ""]
  checks = {label: section.get("default_check") for label, section in models.items()}
  if all(checks.values()):
    default = next(iter(checks.values()))["default"]
    clear = [label for label, check in checks.items() if check["clear"]]
    lines += [f"Library default strategy: **{default}**. It wins, with the paired "
              f"{first['confidence']:.0%} CI "
              f"against the runner-up excluding 0, under {len(clear)} of {len(checks)} "
              f"listener models" + (f" ({', '.join(clear)})." if clear else "."), ""]
  for label, section in models.items():
    lines += protocol_lines(label, section)
    lines += ["", f"### All metrics, held out ({label})", ""]
    lines += summary_lines(section["summary"], "####")
    plot_lines = _plot_lines(plots.get(label, {}), path, "####")
    if plot_lines:
      lines += ["", f"### Plots ({label})", ""] + plot_lines
    lines.append("")
  return _write(lines, path)


def headline(summary: dict, strategies: Sequence[str] | None = None) -> list[str]:
  """Per listener model: held-out skip and listen rate per strategy, with 95% CIs."""
  lines = []
  for model, section in summary["models"].items():
    table = section["summary"]["metrics"]
    order = strategies or [n for n in section["names"] if "[" not in n]
    lines.append(f"listener model {model}: best {section['top']}, runner-up "
                 f"{section['runner_up']} (held-out listen rate)")
    for name in order:
      parts = []
      for metric, label in (("skip_rate", "skip rate"), ("listen_rate", "listen rate")):
        entry = table.get(metric, {}).get("strategies", {}).get(name)
        if entry and entry["mean"] is not None:
          parts.append(f"{label} {entry['mean']:.3f} [{entry['lo']:.3f}, {entry['hi']:.3f}]")
      if parts:
        lines.append(f"{name}: " + ", ".join(parts))
  return lines
