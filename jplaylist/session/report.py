"""Plots and a markdown report of the adaptive-playlisting study.

Takes what `jplaylist.session.metrics` computes: `per_event_curves` ->
`plot_curves`, `adaptation_curves` -> `plot_adaptation`, `summarize` ->
`write_markdown`. Plots are PNG files drawn with matplotlib's Agg backend, so
no display is needed.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

_TITLES = {
    "skip_rate": "skip rate", "early_skip_rate": "early-skip rate",
    "listen_rate": "expected listen rate", "oracle_listen_rate": "oracle listen rate",
    "realised_listen_rate": "realised listen rate", "cumulative_reward": "cumulative reward",
    "cumulative_regret": "cumulative regret vs oracle",
}


def _names(num_strategies: int, strategy_names: Sequence[str] | None) -> list[str]:
  if strategy_names is None:
    return [f"strategy {s}" for s in range(num_strategies)]
  if len(strategy_names) != num_strategies:
    raise ValueError(f"{len(strategy_names)} strategy_names for {num_strategies} strategies")
  return list(strategy_names)


def _save(figure, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(figure)
  return path


def plot_curves(per_event_curves: Mapping[str, np.ndarray], path: str,
                strategy_names: Sequence[str] | None = None,
                metrics: Sequence[str] | None = None) -> str:
  """One panel per metric: its mean over sessions at each event, one line per strategy.

  Args:
    per_event_curves: name -> [S, E], from `metrics.per_event_curves`.
    path: PNG file to write.
    strategy_names: S names (default "strategy s").
    metrics: which curves, in order (default all; the oracle's listen rate is
      drawn dashed in the listen-rate panel rather than on its own).

  Returns:
    path.
  """
  curves = {name: np.asarray(values, np.float64) for name, values in per_event_curves.items()}
  if metrics is None:
    metrics = [name for name in curves
               if not (name == "oracle_listen_rate" and "listen_rate" in curves)]
  if not metrics:
    raise ValueError("plot_curves: no curves to plot")
  num_strategies, num_events = curves[metrics[0]].shape
  names = _names(num_strategies, strategy_names)
  columns = min(3, len(metrics))
  rows = math.ceil(len(metrics) / columns)
  figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.1 * rows), squeeze=False)
  events = np.arange(num_events)
  for axis, name in zip(axes.ravel(), metrics):
    for s, label in enumerate(names):
      axis.plot(events, curves[name][s], label=label, color=f"C{s}")
    if name == "listen_rate" and "oracle_listen_rate" in curves:
      for s in range(num_strategies):
        axis.plot(events, curves["oracle_listen_rate"][s], color=f"C{s}", linestyle="--",
                  linewidth=0.8, label="oracle" if s == 0 else None)
    axis.set_title(_TITLES.get(name, name))
    axis.set_xlabel("event")
    axis.grid(alpha=0.3)
  for axis in axes.ravel()[len(metrics):]:
    axis.axis("off")
  axes.ravel()[0].legend(fontsize="small")
  figure.tight_layout()
  return _save(figure, path)


def plot_adaptation(adaptation_curves: Mapping, path: str,
                    strategy_names: Sequence[str] | None = None) -> str:
  """Adaptation after mood switches, with and without a text request.

  Two rows (with text / without), two panels each: the served listen rate as a
  fraction of the oracle's at each offset after the switch (with the recovery
  threshold dashed), and the probability of a first listen by that offset.

  Args:
    adaptation_curves: from `metrics.adaptation_curves`.
    path: PNG file to write.
    strategy_names: S names.

  Returns:
    path.
  """
  offsets = np.asarray(adaptation_curves["offsets"])
  figure, axes = plt.subplots(2, 2, figsize=(10, 6.4), squeeze=False)
  for row, (group, title) in enumerate((("text", "switch with a text request"),
                                        ("no_text", "switch without text"))):
    curves = adaptation_curves[group]
    ratio = np.asarray(curves["ratio"], np.float64)
    names = _names(ratio.shape[0], strategy_names)
    for s, label in enumerate(names):
      axes[row, 0].plot(offsets, ratio[s], marker=".", label=label, color=f"C{s}")
      axes[row, 1].plot(offsets, np.asarray(curves["listened_by"], np.float64)[s], marker=".",
                        label=label, color=f"C{s}")
    axes[row, 0].axhline(adaptation_curves.get("recovery_fraction", 0.9), color="grey",
                         linestyle="--", linewidth=0.8)
    count = curves.get("num_switches", "?")
    axes[row, 0].set_title(f"listen rate / oracle's: {title} ({count} switches)")
    axes[row, 1].set_title(f"P(first listen by offset): {title}")
    for axis in axes[row]:
      axis.set_xlabel("events since the switch")
      axis.grid(alpha=0.3)
  axes[0, 0].legend(fontsize="small")
  figure.tight_layout()
  return _save(figure, path)


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
  strategies = list(summary["strategies"])
  baseline = summary.get("baseline")
  level = f"{summary.get('confidence', 0.95):.0%}"
  lines = ["# Adaptive playlisting study", "",
           f"{summary['num_sessions']} sessions x {summary['num_events']} events, "
           f"{len(strategies)} strategies. Mean per session [{level} percentile bootstrap CI over "
           f"sessions, {summary.get('num_resamples', '?')} resamples, seed "
           f"{summary.get('seed', '?')}]. Adaptation delays average over mood switches; "
           f"a delay that never ends within its segment counts as the segment's length "
           f"(censored).", ""]
  header = "| metric | " + " | ".join(strategies) + " |"
  rule = "|---|" + "---|" * len(strategies)
  lines += [f"## Means [{level} CI]", "", header, rule]
  for name, metric in summary["metrics"].items():
    cells = [_interval(metric["strategies"][s]["mean"], metric["strategies"][s]["lo"],
                       metric["strategies"][s]["hi"]) for s in strategies]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  others = [s for s in strategies if s != baseline]
  if baseline is not None and others:
    lines += ["", f"## Difference vs {baseline} (paired, [{level} CI])", "",
              "`*`: the CI excludes 0.", "",
              "| metric | " + " | ".join(others) + " |", "|---|" + "---|" * len(others)]
    for name, metric in summary["metrics"].items():
      better = {True: " (higher better)", False: " (lower better)"}.get(
          metric.get("higher_is_better"), "")
      cells = []
      for s in others:
        entry = metric["strategies"][s]
        cell = _interval(entry["diff"], entry["diff_lo"], entry["diff_hi"], signed=True)
        if entry["diff_lo"] is not None and (entry["diff_lo"] > 0 or entry["diff_hi"] < 0):
          cell += " *"
        cells.append(cell)
      lines.append(f"| {name}{better} | " + " | ".join(cells) + " |")
  lines += ["", "## Metrics", ""]
  lines += [f"- **{name}**: {metric['description']}" for name, metric in summary["metrics"].items()]
  items = plots.items() if isinstance(plots, Mapping) else (
      (os.path.splitext(os.path.basename(p))[0], p) for p in plots)
  items = list(items)
  if items:
    lines += ["", "## Plots", ""]
    directory = os.path.dirname(os.path.abspath(path))
    for title, plot in items:
      relative = os.path.relpath(os.path.abspath(plot), directory)
      lines += [f"### {title}", "", f"![{title}]({relative})", ""]
  os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines).rstrip() + "\n")
  return path
