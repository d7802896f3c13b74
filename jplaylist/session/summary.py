"""Summaries of the study: means with CIs, paired differences, gain shares, ablations.

Host-side numpy over the per-session values of `per_session.per_session_metrics`,
with the percentile bootstrap over sessions of `jplaylist.session.bootstrap`:
  `summarize`      every metric's mean per strategy with its CI, and the
                   paired difference against one reference strategy.
  `best_baseline`  the strongest competitor of the default strategy.
  `gain_shares`    per strategy, the share of the oracle's listen-rate gain
                   over the initial order that it captures.
  `paired_rows`    chosen pairs (an ablation against the default) on chosen
                   metrics, paired over sessions.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from jplaylist.session import bootstrap
from jplaylist.session import per_session

def _clean(x: float) -> float | None:
  """A JSON-safe float: NaN and inf become None."""
  return float(x) if math.isfinite(x) else None


def summarize(results: dict, strategy_names: Sequence[str], baseline: str | None = None, *,
              num_resamples: int = 2000, seed: int = 0, confidence: float = 0.95, k: int = 10,
              window: int = 3, recovery_fraction: float = 0.9) -> dict:
  """Per strategy, each metric's mean with its CI and the paired difference vs baseline.

  Args:
    results: dict of numpy arrays recorded by the study, S strategies x B
      sessions x E events:
        served_prob [S,B,E] float   true listen probability of the served track
        oracle_prob [B,E] or [S,B,E] best true probability among the available
        skipped [S,B,E] bool         skipped before the end
        early_skipped [S,B,E] bool   optional
        listened [S,B,E] bool        optional, realised listens (first-listen)
        ndcg, precision [S,B,E]      optional, from `ranking_metrics` (NaN ok)
        auc [S,B] or [S,B,E]         optional, from `session_auc` (NaN ok)
        switch, switch_text [B,E]    optional, mood switch / with a text request
        mask [B,E] bool              optional, event happened (padded sessions)
    strategy_names: S names.
    baseline: name of the strategy the differences are taken against (None:
      no differences).
    num_resamples, seed, confidence: of the bootstrap over sessions; every
      metric and strategy uses the same resamples.
    k, window, recovery_fraction: see `per_session_metrics`.

  Returns:
    JSON-serialisable dict (NaN -> None): {"strategies", "baseline",
    "num_sessions", "num_events", "confidence", "num_resamples", "seed",
    "settings", "metrics": {name: {"description", "higher_is_better",
    "strategies": {strategy: {"mean", "lo", "hi", "num_sessions", and with
    a baseline "diff", "diff_lo", "diff_hi"}}}}}. Adaptation metrics average
    over switches (sessions weighted by their switch count).
  """
  strategy_names = list(strategy_names)
  metrics = per_session.per_session_metrics(results, k=k, window=window,
                                           recovery_fraction=recovery_fraction)
  num_strategies, num_sessions = next(iter(metrics.values())).values.shape
  if len(strategy_names) != num_strategies:
    raise ValueError(f"{len(strategy_names)} strategy_names for {num_strategies} strategies in "
                     f"results")
  if baseline is not None and baseline not in strategy_names:
    raise ValueError(f"baseline {baseline!r} is not one of the strategies {strategy_names}")
  base = None if baseline is None else strategy_names.index(baseline)

  columns, weights = [], []
  for metric in metrics.values():
    for s in range(num_strategies):
      columns.append(metric.values[s])
      weights.append(metric.weights)
      if base is not None:
        columns.append(metric.values[s] - metric.values[base])
        weights.append(metric.weights)
  point, lo, hi, count = bootstrap.bootstrap_columns(
      np.stack(columns, 1), np.stack(weights, 1), num_resamples, seed, confidence)
  column = iter(range(len(columns)))
  table = {}
  for name, metric in metrics.items():
    per_strategy = {}
    for s in range(num_strategies):
      c = next(column)
      entry = dict(mean=_clean(point[c]), lo=_clean(lo[c]), hi=_clean(hi[c]),
                   num_sessions=int(count[c]))
      if base is not None:
        c = next(column)
        entry.update(diff=_clean(point[c]), diff_lo=_clean(lo[c]), diff_hi=_clean(hi[c]))
      per_strategy[strategy_names[s]] = entry
    table[name] = dict(description=metric.description, higher_is_better=metric.higher_is_better,
                       strategies=per_strategy)
  return dict(strategies=strategy_names, baseline=baseline, num_sessions=int(num_sessions),
              num_events=int(np.shape(results["served_prob"])[-1]), confidence=confidence,
              num_resamples=int(num_resamples), seed=int(seed),
              settings=dict(k=k, window=window, recovery_fraction=recovery_fraction),
              metrics=table)


def best_baseline(summary: dict, *, exclude: Sequence[str], metric: str = "listen_rate"
                  ) -> str | None:
  """The strategy with the highest mean `metric` among those not in `exclude`.

  The study excludes the oracle (it knows the listener), the default strategy
  and its ablations: the best of the rest is what the default must beat.
  None when nothing is left.
  """
  table = summary["metrics"][metric]["strategies"]
  sign = 1.0 if summary["metrics"][metric]["higher_is_better"] is not False else -1.0
  candidates = [(sign * entry["mean"], name) for name, entry in table.items()
                if name not in exclude and entry["mean"] is not None]
  return max(candidates)[1] if candidates else None


def gain_shares(results: dict, strategy_names: Sequence[str], *, reference: str = "initial",
                oracle: str = "oracle", metric: str = "listen_rate",
                num_resamples: int = 2000, seed: int = 0,
                confidence: float = 0.95) -> dict[str, dict]:
  """Per strategy: (mean - reference) / (oracle - reference) of `metric`, with a CI.

  The share of the oracle's gain over the reference (the initial order) that
  a strategy captures, paired over sessions (`bootstrap.gain_share`). Empty
  when the reference or the oracle was not run.

  Returns:
    {strategy: {"share", "lo", "hi"}} (JSON-safe, NaN -> None), the
    reference and the oracle left out.
  """
  names = list(strategy_names)
  if reference not in names or oracle not in names:
    return {}
  values = per_session.per_session_metrics(results)[metric].values
  base, best = values[names.index(reference)], values[names.index(oracle)]
  out = {}
  for index, name in enumerate(names):
    if name in (reference, oracle):
      continue
    share, lo, hi = bootstrap.gain_share(values[index], base, best, num_resamples, seed,
                                         confidence=confidence)
    out[name] = dict(share=_clean(share), lo=_clean(lo), hi=_clean(hi))
  return out


def paired_rows(results: dict, strategy_names: Sequence[str],
                pairs: Sequence[tuple[str, str]], metrics: Sequence[str], *,
                num_resamples: int = 2000, seed: int = 0,
                confidence: float = 0.95) -> list[dict]:
  """Paired differences a - b over sessions for each (a, b) pair and metric.

  Args:
    results, strategy_names: as in `summarize`.
    pairs: (a, b) strategy names, e.g. (ablation, default).
    metrics: names of `per_session.per_session_metrics` (missing ones are
      left out).

  Returns:
    one dict per pair and metric: {"a", "b", "metric", "higher_is_better",
    "a_mean", "b_mean", "diff", "lo", "hi"} (JSON-safe).
  """
  names = list(strategy_names)
  missing = sorted({n for pair in pairs for n in pair} - set(names))
  if missing:
    raise ValueError(f"paired_rows: strategies {missing} are not among {names}")
  table = per_session.per_session_metrics(results)
  rows = []
  for a, b in pairs:
    for metric in metrics:
      if metric not in table:
        continue
      entry = table[metric]
      va, vb = entry.values[names.index(a)], entry.values[names.index(b)]
      diff, lo, hi = bootstrap.paired_bootstrap(va, vb, num_resamples, seed,
                                                weights=entry.weights, confidence=confidence)
      keep = np.isfinite(va) & np.isfinite(vb) & (entry.weights > 0)
      means = [float(np.sum((entry.weights * v)[keep]) / np.sum(entry.weights[keep]))
               if keep.any() else math.nan for v in (va, vb)]
      rows.append(dict(a=a, b=b, metric=metric, higher_is_better=entry.higher_is_better,
                       a_mean=_clean(means[0]), b_mean=_clean(means[1]), diff=_clean(diff),
                       lo=_clean(lo), hi=_clean(hi)))
  return rows
