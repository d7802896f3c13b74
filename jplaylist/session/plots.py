"""Plots of the adaptive-playlisting study, drawn so that a reader can tell lines apart.

Takes what `jplaylist.session.metrics` computes and writes PNG files with
matplotlib's Agg backend (no display needed):
  `plot_curves`      `per_event_curves` (+ `per_event_bands`): one panel per metric.
  `plot_adaptation`  `adaptation_curves` (+ `bands.adaptation_bands`): after mood
                     switches.
  `plot_heldout`     held-out listen rate per strategy with CI whiskers, the
                     oracle and the initial order as reference lines.
  `study_plots`      both curve plots of a study's results, bands included.

Every strategy keeps one style (`styles`) in every plot and report, whatever the
order or number of strategies drawn: the library's learners have fixed colours,
other names are placed by a hash of the name, sweep variants such as
`adaptive[no_recency]` keep their strategy's colour with another dash, and the
baselines (initial, shuffle, popularity, oracle) are grey and thinner so the
learners stand out. Bands are pointwise 95% intervals over sessions (curves) or
over mood switches (adaptation); legends sit outside the axes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zlib
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from jplaylist.session import bands as bands_lib  # pylint: disable=wrong-import-position
from jplaylist.session import per_session  # pylint: disable=wrong-import-position

# The study's own baselines (`study.BASELINES`; not imported so that plotting
# does not import jax): drawn muted, in greys with their own dashes.
BASELINES = ("initial", "shuffle", "popularity", "oracle")
_BASELINE_STYLES = {"oracle": ("#303030", (0, (6, 2))), "initial": ("#6e6e6e", ":"),
                    "shuffle": ("#9a9a9a", "-."), "popularity": ("#858585", (0, (2, 1, 2, 4)))}
# The library's learners (`strategies.STRATEGIES`): fixed colours (tab10 without its grey).
_LEARNER_COLOURS = {"adaptive": "#1f77b4", "adaptive_mlp": "#ff7f0e", "classifier": "#2ca02c",
                    "knn": "#d62728", "knn_examples": "#9467bd", "linucb": "#8c564b",
                    "thompson": "#e377c2"}
# Colours for other strategies' names, picked by a hash of the name.
_EXTRA_COLOURS = ("#bcbd22", "#17becf", "#1a237e", "#e6ab02", "#7f0000", "#66a61e", "#c51b7d",
                  "#00796b")
# Dashes of sweep variants (and of names whose colour had to be shared).
_VARIANT_DASHES = ("--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)),
                   (0, (8, 2, 2, 2)), (0, (4, 2, 1, 2)), (0, (10, 3)), (0, (2, 3)))
_MARKERS = (None, "o", "s", "^", "v", "D", "x", "+")
# The study's ablations of adaptive (`protocol.ABLATIONS`; not imported, it
# imports jax) and sweep variants in general carry markers as well as dashes:
# dashes alone (dotted against densely dotted) are hard to tell apart.
_KNOWN_VARIANTS = {"no_refit": ("--", "o"), "equal_weights": (":", "s"),
                   "no_recency": ("-.", "^"), "no_cold_start": ((0, (8, 2, 2, 2)), "v"),
                   "no_fusion": ((0, (1, 1)), "D")}
_WIDTH = {"learner": 1.9, "variant": 1.4, "baseline": 1.2}

_PANELS = {  # metric -> (title, y label)
    "skip_rate": ("Skip rate", "fraction of served tracks skipped"),
    "early_skip_rate": ("Early-skip rate", "fraction skipped early"),
    "listen_rate": ("Expected listen rate", "mean true listen probability"),
    "oracle_listen_rate": ("Best available listen rate", "true listen probability"),
    "realised_listen_rate": ("Realised listen rate", "fraction of served tracks listened to"),
    "cumulative_reward": ("Cumulative reward", "sum of listen probabilities so far"),
    "cumulative_regret": ("Cumulative regret vs the best track", "sum of (best - served)"),
}


@dataclasses.dataclass(frozen=True)
class LineStyle:
  """How one strategy is drawn."""
  color: str
  linestyle: str | tuple
  linewidth: float
  marker: str | None
  muted: bool                  # a baseline: grey, thinner, drawn below the learners

  def kwargs(self, values=None) -> dict:
    """Keyword arguments of `Axes.plot` for a line through `values`.

    A line with no finite value (e.g. a ratio to an oracle that had nothing
    to serve) is drawn without markers: matplotlib's fractional `markevery`
    fails on it.
    """
    marker = self.marker
    if values is not None and not np.any(np.isfinite(np.asarray(values, np.float64))):
      marker = None
    return dict(color=self.color, linestyle=self.linestyle, linewidth=self.linewidth,
                marker=marker, markersize=3.5, markevery=0.08 if marker else None,
                zorder=2 if self.muted else 3)


def split_name(name: str) -> tuple[str, str | None]:
  """'adaptive[no_recency]' -> ('adaptive', 'no_recency'); 'knn' -> ('knn', None)."""
  if name.endswith("]") and "[" in name:
    base, variant = name[:-1].split("[", 1)
    return base, variant
  return name, None


def _hash(text: str) -> int:
  return zlib.crc32(text.encode("utf-8"))


def styles(names: Sequence[str]) -> dict[str, LineStyle]:
  """One style per name, the same for a name whatever else is drawn with it.

  Learners of `strategies.STRATEGIES` and the baselines have fixed styles;
  any other strategy takes a colour by a hash of its name, moved on to the next
  free colour only if that colour is already taken in this set (decided in
  sorted order, so the order of `names` never matters). A sweep variant
  `base[variant]` takes its base's colour and a dash picked the same way. No
  two names of one call share colour, dash and marker.

  Args:
    names: strategy names, no duplicates.

  Returns:
    name -> LineStyle.
  """
  names = list(names)
  seen = set()
  for name in names:
    if name in seen:
      raise ValueError(f"duplicate strategy name {name!r} in {names}")
    seen.add(name)
  families: dict[str, list[str | None]] = {}
  for name in sorted(names):
    base, variant = split_name(name)
    families.setdefault(base, []).append(variant)

  colour = {}
  for base in families:
    if base in _LEARNER_COLOURS:
      colour[base] = _LEARNER_COLOURS[base]
    elif base in _BASELINE_STYLES:
      colour[base] = _BASELINE_STYLES[base][0]
  spare = list(_EXTRA_COLOURS) + [c for c in _LEARNER_COLOURS.values()
                                  if c not in colour.values()]
  for base in sorted(b for b in families if b not in colour):
    start = _hash(base) % len(_EXTRA_COLOURS)
    order = spare[start:len(_EXTRA_COLOURS)] + spare[:start] + spare[len(_EXTRA_COLOURS):]
    free = [c for c in order if c not in colour.values()]
    # Past the palette colours repeat; dash and marker below keep lines apart.
    colour[base] = free[0] if free else _EXTRA_COLOURS[start]

  taken: set = set()
  out = {}
  # Known names first, so their styles never depend on the other names.
  ordered = sorted(families, key=lambda b: (b not in _LEARNER_COLOURS
                                            and b not in _BASELINE_STYLES, b))
  for base in ordered:
    muted = base in _BASELINE_STYLES
    own_dash = _BASELINE_STYLES[base][1] if muted else "-"
    for variant in sorted(families[base], key=lambda v: (v is not None, v or "")):
      markers = _MARKERS
      if variant is None:
        width = _WIDTH["baseline" if muted else "learner"]
        dashes = (own_dash,) + _VARIANT_DASHES
      else:
        width = _WIDTH["baseline" if muted else "variant"]
        start = _hash(variant) % len(_VARIANT_DASHES)
        dashes = _VARIANT_DASHES[start:] + _VARIANT_DASHES[:start]
        first = _MARKERS[1 + _hash(variant) % (len(_MARKERS) - 1)]
        if variant in _KNOWN_VARIANTS:
          dash, first = _KNOWN_VARIANTS[variant]
          dashes = (dash,) + tuple(d for d in dashes if d != dash)
        markers = (first,) + tuple(m for m in _MARKERS if m != first)
      choice = next(((dash, marker) for marker in markers for dash in dashes
                     if (colour[base], repr(dash), marker) not in taken), None)
      if choice is None:
        raise ValueError(f"too many variants of {base!r} to draw apart: {families[base]}")
      dash, marker = choice
      taken.add((colour[base], repr(dash), marker))
      name = base if variant is None else f"{base}[{variant}]"
      out[name] = LineStyle(colour[base], dash, width, marker, muted)
  return {name: out[name] for name in names}


def _names(num_strategies: int, strategy_names: Sequence[str] | None) -> list[str]:
  if strategy_names is None:
    return [f"strategy {s}" for s in range(num_strategies)]
  if len(strategy_names) != num_strategies:
    raise ValueError(f"{len(strategy_names)} strategy_names for {num_strategies} strategies")
  return list(strategy_names)


def _legend_order(names: Sequence[str]) -> list[int]:
  """Learners first, then baselines, each in the given order."""
  return sorted(range(len(names)), key=lambda s: split_name(names[s])[0] in BASELINES)


def _legend(figure, axes, names: Sequence[str], note: str | None = None,
            spare=None) -> None:
  """One legend for the figure, learners above baselines: in `spare` (an unused
  panel) if given, else right of the axes."""
  by_label = {}
  for axis in np.ravel(axes):
    handles, labels = axis.get_legend_handles_labels()
    for handle, label in zip(handles, labels):
      by_label.setdefault(label, handle)
  order = [names[s] for s in _legend_order(names) if names[s] in by_label]
  extra = [label for label in by_label if label not in names]
  if note and any(split_name(name)[1] is not None for name in names):
    note += "\n(none for sweep variants)"
  where = (dict(loc="center", bbox_to_anchor=spare.get_position().bounds) if spare is not None
           else dict(loc="upper left", bbox_to_anchor=(1.0, 0.97)))
  figure.legend([by_label[label] for label in order + extra], order + extra, frameon=False,
                fontsize="small", title=note, title_fontsize="small", handlelength=3.2,
                ncols=2 if spare is not None and len(order + extra) > 12 else 1, **where)


def _save(figure, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(figure)
  return path


def _band(axis, x, lo, hi, name: str, style: LineStyle, limits=(-np.inf, np.inf)) -> None:
  """A shaded band, for strategies only: sweep variants' bands would stack into mush."""
  if split_name(name)[1] is not None:
    return
  lo = np.clip(np.asarray(lo, np.float64), *limits)
  hi = np.clip(np.asarray(hi, np.float64), *limits)
  axis.fill_between(x, lo, hi, where=np.isfinite(lo) & np.isfinite(hi), color=style.color,
                    alpha=0.07 if style.muted else 0.12, linewidth=0, zorder=1)


def plot_curves(per_event_curves: Mapping[str, np.ndarray], path: str,
                strategy_names: Sequence[str] | None = None,
                metrics: Sequence[str] | None = None,
                bands: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                smooth: int = 1) -> str:
  """One panel per metric: its mean over sessions at each event, one line per strategy.

  Args:
    per_event_curves: name -> [S, E], from `metrics.per_event_curves`.
    path: PNG file to write.
    strategy_names: S names (default "strategy s").
    metrics: which curves, in order (default all but the oracle's listen rate,
      which the listen-rate panel draws as one black line unless an "oracle"
      strategy is drawn already).
    bands: name -> (lo [S, E], hi [S, E]), e.g. `metrics.per_event_bands`,
      drawn shaded around each curve.
    smooth: events in a centred moving average of the per-event panels (not
      the cumulative ones, already smooth), which with many strategies keeps
      the lines apart; their bands' ends are averaged the same way, which is
      conservative (the standard deviation of a mean is at most the mean of
      the standard deviations).

  Returns:
    path.
  """
  curves = {name: np.asarray(values, np.float64) for name, values in per_event_curves.items()}
  if metrics is None:
    metrics = [name for name in curves
               if not (name == "oracle_listen_rate" and "listen_rate" in curves)]
  missing = [name for name in metrics if name not in curves]
  if missing:
    raise ValueError(f"plot_curves: no curves named {missing}; have {sorted(curves)}")
  if not metrics:
    raise ValueError("plot_curves: no curves to plot")
  num_strategies, num_events = curves[metrics[0]].shape
  names = _names(num_strategies, strategy_names)
  style = styles(names)
  columns = min(3, len(metrics))
  rows = math.ceil(len(metrics) / columns)
  figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.3 * rows), squeeze=False)
  events = np.arange(1, num_events + 1)
  for axis, metric in zip(axes.ravel(), metrics):
    cumulative = metric.startswith("cumulative")
    window = 1 if cumulative else smooth
    for s in _legend_order(names)[::-1]:  # learners drawn last, on top
      if bands is not None and metric in bands:
        lo, hi = (bands_lib.moving_average(b[s], window) for b in bands[metric])
        _band(axis, events, lo, hi, names[s], style[names[s]],
              (-np.inf, np.inf) if cumulative else (0, 1))
      line = bands_lib.moving_average(curves[metric][s], window)
      axis.plot(events, line, label=names[s], **style[names[s]].kwargs(line))
    if (metric == "listen_rate" and "oracle_listen_rate" in curves and "oracle" not in names
        and "oracle_listen_rate" not in metrics):
      # Differs by strategy only through what each has played: one line.
      best = bands_lib.moving_average(np.nanmean(curves["oracle_listen_rate"], 0), smooth)
      axis.plot(events, best, color="black",
                linestyle=(0, (1, 1)), linewidth=1.0, label="best available (mean)")
    title, ylabel = _PANELS.get(metric, (metric, metric))
    axis.set_title(title, fontsize="medium")
    axis.set_ylabel(ylabel, fontsize="small")
    axis.set_xlabel("event in the session", fontsize="small")
    axis.tick_params(labelsize="small")
    axis.grid(alpha=0.3)
  for axis in axes.ravel()[len(metrics):]:
    axis.axis("off")
  if smooth > 1:
    figure.suptitle(f"Mean over sessions at each event; per-event panels: centred moving "
                    f"average over {smooth} events", fontsize="medium")
  figure.tight_layout()
  note = "shaded: 95% CI over sessions" if bands is not None else None
  spare = axes.ravel()[len(metrics)] if len(metrics) < axes.size else None
  _legend(figure, axes, names, note, spare)
  return _save(figure, path)


def plot_adaptation(adaptation_curves: Mapping, path: str,
                    strategy_names: Sequence[str] | None = None,
                    bands: Mapping | None = None) -> str:
  """Adaptation after mood switches, with and without a text request.

  Two rows (with text / without), two panels each: the served listen rate as a
  fraction of the oracle's at each offset after the switch (with the recovery
  threshold dashed), and the probability of a first listen by that offset.

  Args:
    adaptation_curves: from `metrics.adaptation_curves`.
    path: PNG file to write.
    strategy_names: S names.
    bands: from `bands.adaptation_bands` (same settings), drawn shaded.

  Returns:
    path.
  """
  offsets = np.asarray(adaptation_curves["offsets"])
  figure, axes = plt.subplots(2, 2, figsize=(10.5, 7.0), squeeze=False, sharex=True)
  names = None
  for row, (group, title) in enumerate((("text", "switch with a text request"),
                                        ("no_text", "switch without text"))):
    curves = adaptation_curves[group]
    ratio = np.asarray(curves["ratio"], np.float64)
    listened_by = np.asarray(curves["listened_by"], np.float64)
    names = _names(ratio.shape[0], strategy_names)
    style = styles(names)
    for s in _legend_order(names)[::-1]:
      for column, values, key in ((0, ratio, "ratio"), (1, listened_by, "listened_by")):
        if bands is not None and key in bands.get(group, {}):
          lo, hi = bands[group][key]
          _band(axes[row, column], offsets, lo[s], hi[s], names[s], style[names[s]],
                (0, np.inf) if key == "ratio" else (0, 1))
        axes[row, column].plot(offsets, values[s], label=names[s],
                                **style[names[s]].kwargs(values[s]))
    fraction = adaptation_curves.get("recovery_fraction", 0.9)
    axes[row, 0].axhline(fraction, color="black", linestyle=(0, (1, 2)), linewidth=0.9,
                         label=f"recovery threshold ({fraction:.0%})")
    count = curves.get("num_switches", "?")
    if count == 0:
      for axis in axes[row]:
        axis.text(0.5, 0.5, "no switches of this kind", transform=axis.transAxes,
                  ha="center", va="center", color="grey", zorder=5,
                  bbox=dict(facecolor="white", edgecolor="none"))
    switches = "1 switch" if count == 1 else f"{count} switches"
    axes[row, 0].set_title(f"{title} ({switches}):\nlisten rate / best available",
                           fontsize="medium")
    axes[row, 1].set_title(f"{title}:\nP(first listen by this offset)", fontsize="medium")
    axes[row, 0].set_ylabel("served / best available", fontsize="small")
    axes[row, 1].set_ylabel("probability", fontsize="small")
    axes[row, 1].set_ylim(-0.02, 1.02)
    for axis in axes[row]:
      axis.tick_params(labelsize="small")
      axis.grid(alpha=0.3)
  for axis in axes[1]:
    axis.set_xlabel("events since the switch (0: first track after it)", fontsize="small")
  figure.tight_layout()
  _legend(figure, axes, names,
          "shaded: 95% CI over switches" if bands is not None else None)
  return _save(figure, path)


def plot_heldout(names: Sequence[str], means: Sequence[float], lows: Sequence[float],
                 highs: Sequence[float], path: str, *, title: str | None = None,
                 xlabel: str = "held-out listen rate (mean per session)",
                 references: Sequence[str] = ("oracle", "initial")) -> str:
  """Held-out figure per strategy as points with CI whiskers, best at the top.

  The strategies named in `references` (when present) are drawn as vertical
  lines with their CI shaded instead of as points; with both the oracle and the
  initial order, a top axis reads the share of the oracle's gain over the
  initial order, (x - initial) / (oracle - initial).

  Args:
    names: S strategy names.
    means, lows, highs: [S] mean and CI bounds (e.g. 95% bootstrap over sessions).
    path: PNG file to write.
    title: figure title.
    xlabel: what the figure is.
    references: names drawn as reference lines.

  Returns:
    path.
  """
  names = list(names)
  values = [np.asarray(v, np.float64).reshape(-1) for v in (means, lows, highs)]
  for label, array in zip(("means", "lows", "highs"), values):
    if array.shape != (len(names),):
      raise ValueError(f"plot_heldout: {label} has {array.size} values for {len(names)} names")
  means, lows, highs = values
  bad = [n for n, m, lo, hi in zip(names, means, lows, highs)
         if np.isfinite(m) and np.isfinite(lo) and np.isfinite(hi) and not lo <= m <= hi]
  if bad:
    raise ValueError(f"plot_heldout: mean outside [low, high] for {bad}")
  style = styles(names)
  index = {name: s for s, name in enumerate(names)}
  shown = [s for s in np.argsort(-np.nan_to_num(means, nan=-np.inf), kind="stable")
           if names[s] not in references]
  figure, axis = plt.subplots(figsize=(7.5, 1.2 + 0.38 * max(len(shown), 1)))
  y = np.arange(len(shown))[::-1]
  for row, s in zip(y, shown):
    line = style[names[s]]
    variant = split_name(names[s])[1] is not None
    axis.errorbar(means[s], row, xerr=[[means[s] - lows[s]], [highs[s] - means[s]]],
                  fmt="D" if variant else "o", color=line.color,
                  markersize=6 if not (line.muted or variant) else 5, capsize=3,
                  elinewidth=1.6 if not line.muted else 1.0, zorder=3)
    axis.annotate(f"{means[s]:.3f}", (highs[s], row), xytext=(4, 0),
                  textcoords="offset points", va="center", fontsize="x-small",
                  bbox=dict(facecolor="white", edgecolor="none", pad=0.5, alpha=0.8))
  axis.set_yticks(y, [names[s] for s in shown], fontsize="small")
  for label, s in zip(axis.get_yticklabels(), shown):
    if style[names[s]].muted:
      label.set_color("dimgrey")
  for name in references:
    if name in index:
      s, line = index[name], style[name]
      axis.axvline(means[s], color=line.color, linestyle=line.linestyle, linewidth=1.2,
                   label=f"{name} {means[s]:.3f}", zorder=2)
      if np.isfinite(lows[s]) and np.isfinite(highs[s]):
        axis.axvspan(lows[s], highs[s], color=line.color, alpha=0.12, linewidth=0, zorder=1)
  axis.set_ylim(-0.7, len(shown) - 0.3)
  axis.set_xlabel(xlabel, fontsize="small")
  axis.grid(axis="x", alpha=0.3)
  if "oracle" in index and "initial" in index and "oracle" in references \
      and "initial" in references:
    top, bottom = means[index["oracle"]], means[index["initial"]]
    if np.isfinite(top) and np.isfinite(bottom) and top != bottom:
      share = axis.secondary_xaxis(
          "top", functions=(lambda x: (x - bottom) / (top - bottom),
                            lambda g: bottom + g * (top - bottom)))
      share.set_xlabel("share of the oracle's gain over the initial order", fontsize="small")
      share.tick_params(labelsize="small")
  if any(name in index for name in references):
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize="small",
                title="reference (shaded: CI)", title_fontsize="small")
  if title:
    axis.set_title(title, fontsize="medium")
  figure.tight_layout()
  return _save(figure, path)


def study_plots(results: dict, names: Sequence[str], output_dir: str, *,
                horizon: int = 10) -> dict[str, str]:
  """curves.png and adaptation.png of a study's results, with their 95% bands.

  Args:
    results: the study's per-event records (`study.run`).
    names: S strategy names.
    output_dir: where the PNGs go.
    horizon: offsets after a mood switch drawn in adaptation.png.

  Returns:
    title -> path, for `report.write_markdown`.
  """
  num_events = np.shape(results["served_prob"])[-1]
  plots = {"Metrics over events": plot_curves(
      per_session.per_event_curves(results), os.path.join(output_dir, "curves.png"), names,
      bands=per_session.per_event_bands(results), smooth=5 if num_events >= 30 else 1)}
  if "switch" in results:
    plots["Adaptation after mood switches"] = plot_adaptation(
        per_session.adaptation_curves(results, horizon=horizon),
        os.path.join(output_dir, "adaptation.png"), names,
        bands=bands_lib.adaptation_bands(results, horizon=horizon))
  return plots
