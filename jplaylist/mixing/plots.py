"""The transitions figure of a DJ mix, drawn from its report alone.

Top: the cost of each transition in mix order, stacked by term (tempo, key,
embedding), beside the mean cost per transition of the original order and
of random orders. Bottom: each track's tempo in mix order, labelled with its
key. Legends sit outside the axes so they never cover data.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

_TERMS = (("tempo", "tempo", "tab:blue"), ("key", "key", "tab:orange"),
          ("embedding", "embedding distance", "tab:green"))


def _short(track_id: str, width: int = 26) -> str:
  return track_id if len(track_id) <= width else track_id[:width - 1] + "…"


def plot_transitions(report: dict, path: str) -> str:
  """Writes the figure of `mix.make_mix`'s report to `path` (PNG); returns path."""
  transitions = report["transitions"]
  tracks = {t["id"]: t for t in report["tracks"]}
  order = report["order"]
  totals = report["total_cost"]
  steps = max(len(order) - 1, 1)
  figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5), constrained_layout=True)
  position = np.arange(len(transitions))
  base = np.zeros(len(transitions))
  for key, label, colour in _TERMS:
    values = np.array([t[key] for t in transitions])
    top.bar(position, values, bottom=base, color=colour, label=f"{label} term")
    base += values
  top.axhline(totals["original"] / steps, color="black", linestyle="--",
              label=f"original order, mean ({totals['original']:.1f} total)")
  top.axhline(totals["random_mean"] / steps, color="grey", linestyle=":",
              label=f"random orders, mean ({totals['random_mean']:.1f} total)")
  top.set_xticks(position, [f"{i + 1}→{i + 2}" for i in position])
  top.set_xlabel("transition (position in the mix)")
  top.set_ylabel("transition cost (weighted terms)")
  top.set_title(f"Optimised order: total cost {totals['optimised']:.1f} over {steps} "
                f"transitions")
  top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)

  tempo = np.array([np.nan if tracks[i]["tempo_bpm"] is None else tracks[i]["tempo_bpm"]
                    for i in order], np.float64)
  known = np.isfinite(tempo)
  low, high = (np.min(tempo[known]), np.max(tempo[known])) if known.any() else (100.0, 100.0)
  # An unknown tempo (silence) is drawn as a cross on the axis floor.
  tempo[~known] = low - 0.05 * (high - low + 10)
  source = [tracks[i]["tempo_source"] for i in order]
  slots = np.arange(len(order))
  bottom.plot(slots[known], tempo[known], color="tab:purple", linewidth=1, zorder=1)
  for name, marker in (("index", "o"), ("beat tracker", "s"), ("unknown", "x")):
    chosen = [k for k in slots if source[k] == name]
    if chosen:
      bottom.scatter(chosen, tempo[chosen], marker=marker, color="tab:purple",
                     zorder=2, label=f"tempo from {name}" if name != "unknown"
                     else "tempo unknown")
  for k in slots:
    bottom.annotate(tracks[order[k]]["key"], (k, tempo[k]), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=8)
  bottom.set_ylim(low - 0.1 * (high - low + 10), high + 0.2 * (high - low + 10))
  bottom.set_xticks(slots, [f"{k + 1}. {_short(i)}" for k, i in enumerate(order)],
                    rotation=35, ha="right", fontsize=7)
  bottom.set_xlabel("track (mix order), labelled with its key")
  bottom.set_ylabel("tempo (BPM)")
  bottom.set_title("Tempo per track (half and double tempo count as a match)")
  bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
  figure.savefig(path, dpi=110)
  plt.close(figure)
  return path
