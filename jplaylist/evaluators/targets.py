"""Targets: bars that evaluation figures should reach, given as data.

A run's config may list targets (`config.targets`); the report then shows each
figure beside its bar, whether it is met, and how far it is from it. A target
is a dict:

  dict(label="zero-shot AUC, instrument families",
       metric="zero_shot/instrument_families/auc_roc", at_least=0.92)
  dict(label="text-to-music mAP / chance", metric="text_to_music/all/map",
       over="text_to_music/all/chance_map", at_least=4.0)   # a ratio: 4x chance

`metric` names a figure the evaluators yield; `over` (optional) names another
one to divide it by, so the bar is a multiple of a baseline measured in the
same run (chance mAP depends on the split). `at_least` is the bar. Targets
come as a sequence of such dicts (the order is the report's) or a mapping of
name -> dict (the name is the default label).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

_FIELDS = ("label", "metric", "over", "at_least")


@dataclasses.dataclass(frozen=True)
class Target:
  label: str
  metric: str
  at_least: float
  over: str | None = None

  def value(self, results: Mapping[str, float]) -> float | None:
    """The figure this target bars (a ratio when `over`); None when not measured."""
    value = results.get(self.metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
      return None
    if self.over is None:
      return float(value)
    base = results.get(self.over)
    if base is None or not base or math.isnan(base):
      return None
    return float(value) / float(base)

  def bar_text(self) -> str:
    return f">= {self.at_least:g}x" if self.over else f">= {self.at_least:g}"


@dataclasses.dataclass(frozen=True)
class Check:
  """A target checked against one split's results (value None: not measured)."""
  target: Target
  value: float | None

  @property
  def met(self) -> bool | None:
    return None if self.value is None else self.value >= self.target.at_least

  @property
  def gap(self) -> float | None:
    """value - bar (negative: short of it); in multiples of `over` for ratios."""
    return None if self.value is None else self.value - self.target.at_least

  def value_text(self) -> str:
    if self.value is None:
      return "–"
    return f"{self.value:.2f}x" if self.target.over else f"{self.value:.3f}"

  def verdict(self) -> str:
    """'met (+0.012)', 'NOT met (0.050 short)' or 'not measured'."""
    if self.value is None:
      return "not measured"
    unit = "x" if self.target.over else ""
    digits = 2 if self.target.over else 3
    if self.met:
      return f"met (+{self.gap:.{digits}f}{unit})"
    return f"NOT met ({-self.gap:.{digits}f}{unit} short)"

  def line(self) -> str:
    """One headline line: label, value, bar and verdict."""
    return (f"{self.target.label}: {self.value_text()} (target "
            f"{self.target.bar_text()}: {self.verdict()})")

  def as_dict(self) -> dict[str, Any]:
    return {"label": self.target.label, "metric": self.target.metric,
            "over": self.target.over, "at_least": self.target.at_least,
            "value": self.value, "met": self.met, "gap": self.gap}


def _plain(spec: Any) -> Any:
  return spec.to_dict() if hasattr(spec, "to_dict") else spec


def parse(spec: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] | None
          ) -> list[Target]:
  """Targets from config data (see the module docstring); [] for None.

  Raises:
    ValueError: an entry without `metric` or a numeric `at_least`, or with an
      unknown field, naming the entry.
  """
  spec = _plain(spec)
  if not spec:
    return []
  if isinstance(spec, Mapping):
    entries = [(str(name), _plain(entry)) for name, entry in spec.items()]
  elif isinstance(spec, (list, tuple)):
    entries = [(f"targets[{i}]", _plain(entry)) for i, entry in enumerate(spec)]
  else:
    raise ValueError(f"targets: expected a list of dicts or a dict of dicts, got {spec!r}")
  out = []
  for name, entry in entries:
    if not isinstance(entry, Mapping):
      raise ValueError(f"target {name}: expected a dict with metric and at_least, "
                       f"got {entry!r}")
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
      raise ValueError(f"target {name}: unknown fields {unknown}; known: {list(_FIELDS)}")
    metric, bar = entry.get("metric"), entry.get("at_least")
    if not isinstance(metric, str) or not metric:
      raise ValueError(f"target {name}: `metric` must name a figure, got {metric!r}")
    if isinstance(bar, bool) or not isinstance(bar, (int, float)) or math.isnan(bar):
      raise ValueError(f"target {name}: `at_least` must be a number, got {bar!r}")
    over = entry.get("over")
    if over is not None and (not isinstance(over, str) or not over):
      raise ValueError(f"target {name}: `over` must name a figure, got {over!r}")
    label = entry.get("label") or (name if isinstance(spec, Mapping) else metric)
    out.append(Target(label=str(label), metric=metric, at_least=float(bar), over=over))
  return out


def check(targets: Sequence[Target], results: Mapping[str, float]) -> list[Check]:
  """Each target against one split's results, in order."""
  return [Check(t, t.value(results)) for t in targets]
