"""The study's protocol: every strategy tuned on some listeners, reported on others.

Issue 17's fair comparison (deliverable 4), run under each listener model:

1. Tuning. Each learner's grid (`config.sweep.<strategy>`: field -> values,
   crossed; only fields the strategy reads, `strategies.sweepable_fields`)
   runs in one compiled call per strategy on sessions of tuning listeners.
   The variant with the best mean expected listen rate (the served track's
   true listen probability, over sessions and events) is chosen, the first of
   ties. adaptive_mlp's grid starts from adaptive's chosen setting, so its
   sweep decides only the model choice by session length (`mlp_after`).
2. Held out. Every strategy at its chosen setting, the baselines, and one
   ablation of each patent component of adaptive (`ABLATIONS`, applied to the
   chosen setting) run on sessions of other listeners: a plan drawn with
   another key, checked to share no listener with the tuning plan.
3. Comparison, paired over held-out sessions with percentile bootstrap CIs:
   means of every metric (`summary.summarize`); the listen-rate difference of
   each strategy against the best non-oracle competitor (the top strategy
   against the runner-up, every other against the top); the share of the
   oracle's listen-rate gain over the initial order each captures
   (`summary.gain_shares`); each ablation against the full method; the
   patent's claims (`claims`).

`run_from_config` does it for every model of `config.listener_models`
(each world rebuilt and recalibrated) and writes one report.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from jplaylist.session import long_term as long_term_lib
from jplaylist.session import metrics
from jplaylist.session import plots as plots_lib
from jplaylist.session import report as session_report
from jplaylist.session import simulator
from jplaylist.session import strategies as strategies_lib
from jplaylist.session import study
from jplaylist.session import summary as summary_lib

# Ablations of adaptive: name -> (component switched off, overrides of the
# chosen setting). "equal_weights" and "no_recency" keep the names the
# claims use.
ABLATIONS = {
    # The hand-over never starts: the cold-start kNN part only.
    "no_refit": ("classifier refit (kNN only)", lambda p: dict(handover_at=1e6)),
    "equal_weights": ("text weighting (text weighs as a listen)",
                      lambda p: dict(text_weight=float(p.rules.listen_weight))),
    "no_recency": ("recency (no decay by position or time)",
                   lambda p: dict(recency_decay=1.0, time_half_life_s=float("inf"))),
    # The classifier takes over fully at the first example of the second
    # class; with one class the hand-over is 0 by construction (no classifier).
    "no_cold_start": ("cold start (classifier from the first two-class example)",
                      lambda p: dict(handover_at=0.0, handover_width=0.01)),
    "no_fusion": ("fusion with the background model", lambda p: dict(mix_weight=0.0)),
}
# Ablations of a learned long-term ranker (config.long_term "item2vec" or
# "mf"): not a setting but another mix ranker, run in a call of their own on
# the same sessions and draws (`held_out`). "background_fusion" fuses the
# background direction instead, at the same chosen setting.
LONG_TERM_ABLATIONS = {
    "background_fusion": "the learned ranker (the background direction fused instead)",
}
def ablation_info(ablations: Sequence[str], long_term: str = "background") -> dict[str, str]:
  """Ablation -> what it switches off, naming the mix ranker that is fused."""
  info = {}
  for name in ablations:
    if name in LONG_TERM_ABLATIONS:
      info[name] = LONG_TERM_ABLATIONS[name].replace("learned ranker", f"learned ranker "
                                                     f"({long_term})")
    elif name == "no_fusion" and long_term != "background":
      info[name] = f"fusion with the learned long-term ranker ({long_term})"
    else:
      info[name] = ABLATIONS[name][0]
  return info


def check_ablations(ablations: Sequence[str], long_term: str = "background") -> None:
  """Raises ValueError naming unknown ablations, or ones this mix ranker lacks."""
  unknown = sorted(set(ablations) - set(ABLATIONS) - set(LONG_TERM_ABLATIONS))
  if unknown:
    raise ValueError(f"unknown ablations {unknown}; known: "
                     f"{sorted(ABLATIONS) + sorted(LONG_TERM_ABLATIONS)}")
  learned_only = sorted(set(ablations) & set(LONG_TERM_ABLATIONS))
  if learned_only and long_term == "background":
    raise ValueError(f"ablations {learned_only} need a learned long-term ranker; "
                     "config.long_term is 'background'")


# Strategies whose grid is crossed with another's chosen setting.
TUNED_FROM = {"adaptive_mlp": "adaptive"}
# Metrics of the comparison rows.
COMPARED = ("listen_rate", "skip_rate", "auc")


def _format_value(value) -> str:
  return f"{float(value):g}"


def expand_grid(strategy: str, grid: Mapping[str, Any]) -> list[tuple[str, dict]]:
  """The variants of a crossed grid: [(name, overrides)].

  Args:
    strategy: a learner of `strategies.STRATEGIES`.
    grid: field -> value or sequence of values; fields must be ones the
      strategy reads (`strategies.sweepable_fields`).

  Returns:
    One (name, overrides) per combination, fields in sorted order; a name
    lists the fields that vary ("C=1,handover_at=2"); "" for a single one.

  Raises:
    ValueError: naming the strategy and the fields it does not read, or an
      empty list of values.
  """
  if strategy not in strategies_lib.STRATEGIES:
    raise ValueError(f"sweep.{strategy}: only learners can be swept, one of "
                     f"{strategies_lib.STRATEGIES}")
  allowed = strategies_lib.sweepable_fields(strategy)
  unread = sorted(set(grid) - set(allowed))
  if unread:
    raise ValueError(f"sweep.{strategy}: {unread} are not read by {strategy}; it reads "
                     f"{sorted(allowed)}")
  fields = sorted(grid)
  values = [tuple(grid[f]) if isinstance(grid[f], (list, tuple)) else (grid[f],)
            for f in fields]
  for field, options in zip(fields, values):
    if not options:
      raise ValueError(f"sweep.{strategy}.{field}: no values")
  varying = [f for f, options in zip(fields, values) if len(options) > 1]
  out = []
  for combination in itertools.product(*values):
    overrides = {f: float(v) for f, v in zip(fields, combination)}
    out.append((",".join(f"{f}={_format_value(overrides[f])}" for f in varying), overrides))
  return out


def grids_of(sweep: Mapping[str, Mapping[str, Any]], strategies: Sequence[str]
             ) -> tuple[dict[str, list[tuple[str, dict]]], list[str]]:
  """(strategy -> expanded grid for those in `strategies`, grids left unused)."""
  grids, unused = {}, []
  for strategy, grid in sweep.items():
    variants = expand_grid(strategy, dict(grid))  # checks even unused grids
    if strategy in strategies:
      grids[strategy] = variants
    else:
      unused.append(strategy)
  return grids, unused


def listener_fingerprints(plan: simulator.SessionPlan) -> list[bytes]:
  """Per session, the bytes of its listener's hidden parameters (a listener id).

  Built from the listener-level fields of the plan (long-term taste, bag
  weights, taste deviation), so sessions of one listener share it and
  listeners of two plans compare without relying on ids.
  """
  names = getattr(simulator, "LISTENER_FIELDS", ("taste", "bag_weights", "noise_weights"))
  fields = [np.asarray(getattr(plan, name), np.float32).reshape(plan.num_sessions, -1)
            for name in names]
  rows = np.concatenate(fields, axis=1)
  return [row.tobytes() for row in rows]


def shared_listeners(plan_a: simulator.SessionPlan, plan_b: simulator.SessionPlan) -> int:
  """Number of distinct listeners that have sessions in both plans."""
  return len(set(listener_fingerprints(plan_a)) & set(listener_fingerprints(plan_b)))


# ------------------------------------------------------------------ tuning


def tune(world: simulator.World, plan: simulator.SessionPlan, spec: study.StudySpec, rng,
         grids: Mapping[str, Sequence[tuple[str, dict]]], *,
         params: strategies_lib.StrategyParams | None = None,
         long_term: long_term_lib.LongTerm | None = None,
         log: Callable[[str], None] = print) -> dict[str, dict]:
  """Runs each learner's grid on tuning sessions and chooses the best variant.

  Args:
    world, plan, spec: as in `study.run`; the spec's learners with a grid
      are run (ranking metrics off: the choice reads the listen rate only).
    rng: key of the tuning run.
    grids: strategy -> [(name, overrides)] (`expand_grid`).
    params: the setting the overrides apply to (default `StrategyParams.create()`);
      a strategy of TUNED_FROM starts from its source's chosen setting.
    long_term: the learned mix ranker over `plan`'s sessions (`study.run`).
    log: progress lines.

  Returns:
    strategy -> {"variants": [{"name", "overrides", "listen_rate"}],
    "chosen": index of the argmax (first of ties), "name", "overrides" (of
    the chosen variant, including inherited ones), "params" (StrategyParams,
    not JSON)}. A learner without a grid gets its default, untuned.
  """
  params = params or strategies_lib.StrategyParams.create()
  learners = [s for s in spec.strategies if s in strategies_lib.STRATEGIES]
  chosen = {s: dict(variants=[], chosen=None, name="", overrides={}, params=params)
            for s in learners}
  swept = [s for s in learners if s in grids]
  # Strategies tuned from another's choice wait for it: at most two rounds.
  rounds = [[s for s in swept if TUNED_FROM.get(s) not in swept],
            [s for s in swept if TUNED_FROM.get(s) in swept]]
  for strategies in rounds:
    if not strategies:
      continue
    variants, inherited = {}, {}
    for strategy in strategies:
      source = TUNED_FROM.get(strategy)
      inherited[strategy] = dict(chosen[source]["overrides"]) if source in chosen else {}
      variants[strategy] = [(name, params.with_values(**{**inherited[strategy], **overrides}))
                            for name, overrides in grids[strategy]]
    round_spec = dataclasses.replace(spec, strategies=tuple(strategies), ranking_metrics=False)
    results = study.run(world, plan, round_spec, rng, variants=variants,
                        long_term=long_term, log=log)
    listen = np.mean(results["served_prob"], axis=(1, 2))
    start = 0
    for strategy in strategies:
      grid = grids[strategy]
      rates = listen[start:start + len(grid)]
      start += len(grid)
      best = int(np.argmax(rates))
      chosen[strategy] = dict(
          variants=[dict(name=name, overrides=overrides, listen_rate=float(rate))
                    for (name, overrides), rate in zip(grid, rates)],
          chosen=best, name=grid[best][0],
          overrides={**inherited[strategy], **grid[best][1]},
          params=variants[strategy][best][1])
      log(f"tuning {strategy}: chose [{grid[best][0]}] (listen rate {rates[best]:.4f} of "
          f"{len(grid)} variant(s), range {rates.min():.4f}-{rates.max():.4f})")
  return chosen


# ------------------------------------------------------------------ held out


def held_out(world: simulator.World, plan: simulator.SessionPlan, spec: study.StudySpec, rng,
             chosen: Mapping[str, Mapping], *, ablations: Sequence[str] = tuple(ABLATIONS),
             long_term: long_term_lib.LongTerm | None = None,
             log: Callable[[str], None] = print) -> dict:
  """Every strategy at its chosen setting, and adaptive's ablations, on `plan`.

  With a learned `long_term` ranker the fusing learners use it, and a
  LONG_TERM_ABLATIONS entry runs adaptive at its chosen setting with the
  background direction instead, in a call of its own with the same key (so
  the same listener draws per session and event: the rows stay paired).

  Returns:
    `study.run`'s results; names are the strategies, then "adaptive[<ablation>]"
    (a long-term ablation last).
  """
  check_ablations(ablations, long_term.kind if long_term is not None else "background")
  variants = {s: [("", entry["params"])] for s, entry in chosen.items()}
  if "adaptive" in variants:
    full = variants["adaptive"][0][1]
    variants["adaptive"] += [(name, full.with_values(**ABLATIONS[name][1](full)))
                             for name in ablations if name in ABLATIONS]
  results = study.run(world, plan, spec, rng, variants=variants, long_term=long_term, log=log)
  other = [name for name in ablations if name in LONG_TERM_ABLATIONS]
  if other and "adaptive" in variants:
    background_spec = dataclasses.replace(spec, strategies=("adaptive",))
    extra = study.run(world, plan, background_spec, rng,
                      variants={"adaptive": [(name, full) for name in other]}, log=log)
    results = merge_results(results, extra)
  return results


def merge_results(first: dict, second: dict) -> dict:
  """Two `study.run` results on the same plan as one: names and records appended."""
  names = list(first["names"]) + list(second["names"])
  duplicated = sorted({n for n in names if names.count(n) > 1})
  if duplicated:
    raise ValueError(f"merge_results: both results have {duplicated}")
  merged = dict(first)
  for key, value in second.items():
    if key in ("names", "seconds", "switch", "switch_text"):
      continue
    merged[key] = np.concatenate([first[key], value])
  merged["names"] = names
  merged["seconds"] = {**first["seconds"],
                       **{f"{k} ({', '.join(second['names'])})": v
                          for k, v in second["seconds"].items()}}
  return merged


def unchanged_ablations(params: strategies_lib.StrategyParams, ablations: Sequence[str]
                        ) -> list[str]:
  """The ablations that leave `params` as they are (tuning already switched the
  component off, e.g. chose no recency decay): their rows equal the method."""
  same = []
  for name in (a for a in ablations if a in ABLATIONS):
    ablated = params.with_values(**ABLATIONS[name][1](params))
    if all(bool(np.array_equal(a, b)) for a, b in zip(jax.tree.leaves(params),
                                                      jax.tree.leaves(ablated))):
      same.append(name)
  return same


def compare(results: dict, names: Sequence[str], *, ablations: Sequence[str] = (),
            baseline: str | None = "initial", num_resamples: int = 2000, seed: int = 0
            ) -> dict:
  """The held-out comparison: summary, competitor rows, gain shares, ablations, claims.

  Returns:
    {"summary": `summary.summarize` (differences against `baseline` if run),
     "top", "runner_up": best non-oracle strategies by listen rate,
     "comparison": `paired_rows` of (top, runner_up) and (other, top) on
     COMPARED metrics, "gain_shares": `summary.gain_shares`,
     "ablations": `paired_rows` of (adaptive[ablation], adaptive),
     "claims": `claims`}.
  """
  names = list(names)
  summary = summary_lib.summarize(results, names, baseline if baseline in names else None,
                                  num_resamples=num_resamples, seed=seed)
  variants = [n for n in names if "[" in n]
  competitors = [n for n in names if n not in variants and n != "oracle"]
  out_of_race = [n for n in names if n not in competitors]
  top = summary_lib.best_baseline(summary, exclude=out_of_race)
  runner_up = summary_lib.best_baseline(summary, exclude=out_of_race + [top])
  pairs = ([(top, runner_up)] if runner_up else []) + [
      (n, top) for n in competitors if n not in (top,)]
  kwargs = dict(num_resamples=num_resamples, seed=seed)
  ablation_pairs = [(f"adaptive[{a}]", "adaptive") for a in ablations
                    if f"adaptive[{a}]" in names]
  return dict(
      summary=summary, top=top, runner_up=runner_up,
      comparison=summary_lib.paired_rows(results, names, pairs, COMPARED, **kwargs) if top
      else [],
      gain_shares=summary_lib.gain_shares(results, names, **kwargs),
      ablations=summary_lib.paired_rows(results, names, ablation_pairs,
                                        ("listen_rate", "skip_rate"), **kwargs),
      claims=claims(results, names, **kwargs))


def default_check(section: Mapping, default: str = strategies_lib.DEFAULT_STRATEGY) -> dict:
  """Whether the library's default strategy won this held-out comparison.

  Issue 17's bar: the default has the best held-out listen rate of all
  non-oracle strategies, and the paired CI of its difference against the
  runner-up excludes zero.

  Args:
    section: `compare`'s output with "names".
    default: the library's default (`strategies.DEFAULT_STRATEGY`).

  Returns:
    {"default", "in_study", "top", "runner_up", "ranking" (non-oracle, best
    first), "rank" and "adaptive_rank" (1-based, None if not run), "wins",
    "clear" (wins, CI vs the runner-up above 0), "row" (its listen-rate row),
    "settings_differ" (field -> (default setting, tuned setting))}.
  """
  table = section["summary"]["metrics"]["listen_rate"]["strategies"]
  ranking = sorted((n for n in section["names"] if "[" not in n and n != "oracle"
                    and table.get(n, {}).get("mean") is not None),
                   key=lambda n: -table[n]["mean"])
  row = next((r for r in section["comparison"] if r["a"] == default
              and r["metric"] == "listen_rate"), None)
  wins = bool(ranking) and ranking[0] == default
  clear = wins and row is not None and row["lo"] is not None and row["lo"] > 0
  rank = lambda name: ranking.index(name) + 1 if name in ranking else None
  tuned = dict(section.get("tuning", {}).get(default, {}).get("overrides", {}))
  # The run reports the strategy at its tuned setting; say where the
  # library's default settings differ from it.
  defaults = (strategies_lib.DEFAULT_OVERRIDES if default == strategies_lib.DEFAULT_STRATEGY
              else {})
  differ = {f: (float(defaults.get(f, getattr(strategies_lib.StrategyParams, f))), v)
            for f, v in tuned.items() if f in strategies_lib.StrategyParams.__dataclass_fields__
            and float(defaults.get(f, getattr(strategies_lib.StrategyParams, f))) != float(v)}
  return dict(default=default, in_study=default in ranking, top=section["top"],
              runner_up=section["runner_up"], ranking=ranking, rank=rank(default),
              adaptive_rank=rank("adaptive"), wins=wins, clear=bool(clear), row=row,
              settings_differ=differ)


# ------------------------------------------------------------------ from a config


def listener_models(config) -> list[str | None]:
  """The listener models a config asks for (None: the simulator's only one)."""
  models = list(config.get("listener_models", None) or ())
  supported = "listener_model" in simulator.SimConfig.__dataclass_fields__
  if not models:
    return [config.sim.get("listener_model", None)]
  if not supported:
    raise ValueError(f"config.listener_models={tuple(models)}: this simulator has no "
                     "listener_model setting; leave listener_models empty")
  return models


def _with_listener_model(config, model: str | None):
  if model is None:
    return config
  config = copy.deepcopy(config)
  with config.sim.unlocked():
    config.sim.listener_model = model
  return config


def run_protocol(config, world: simulator.World, log: Callable[[str], None] = print
                 ) -> tuple[dict, dict]:
  """Tuning, held-out run and comparison for one world; (section, held-out results)."""
  tuning_key, plan_key, tune_run_key, run_key = jax.random.split(
      jax.random.key(config.seed + 2), 4)
  spec = study.StudySpec(strategies=tuple(config.strategies), candidates=config.candidates,
                         ranking_metrics=config.ranking_metrics,
                         sessions_per_chunk=config.sessions_per_chunk)
  grids, unused = grids_of({k: dict(v) for k, v in dict(config.sweep).items()},
                           spec.strategies)
  if unused:
    log(f"sweep grids of strategies not in this study, not run: {unused}")
  kind = config.get("long_term", "background")
  if kind not in long_term_lib.KINDS:
    raise ValueError(f"config.long_term={kind!r}: expected one of {long_term_lib.KINDS}")
  ablations = tuple(config.ablations)
  if kind != "background":  # the learned ranker is compared with the background one
    ablations += tuple(a for a in LONG_TERM_ABLATIONS if a not in ablations)
  check_ablations(ablations, kind)
  plan = simulator.sample_sessions(plan_key, config.num_sessions, world)
  chosen, shared, rankers = {}, 0, {}
  if config.num_tuning_sessions:
    tuning_plan = simulator.sample_sessions(tuning_key, config.num_tuning_sessions, world)
    shared = shared_listeners(tuning_plan, plan)
    if shared:
      raise RuntimeError(f"{shared} listeners have sessions in both the tuning and the "
                         "held-out plan")
    log(f"tuning on {config.num_tuning_sessions} sessions of other listeners than the "
        f"{config.num_sessions} held-out ones")
    tuning_ranker = fit_long_term(config, world, tuning_plan, "tuning", rankers, log)
    chosen = tune(world, tuning_plan, spec, tune_run_key, grids, long_term=tuning_ranker,
                  log=log)
  else:
    log("num_tuning_sessions=0: every strategy at its default setting, untuned")
    chosen = tune(world, plan, spec, tune_run_key, {}, log=log)
  ranker = fit_long_term(config, world, plan, "held_out", rankers, log)
  results = held_out(world, plan, spec, run_key, chosen, ablations=ablations,
                     long_term=ranker, log=log)
  names = list(results["names"])
  section = compare(results, names, ablations=ablations, baseline=config.baseline,
                    num_resamples=config.num_resamples, seed=config.seed)
  section.update(
      names=names, num_tuning_sessions=int(config.num_tuning_sessions),
      num_sessions=int(config.num_sessions), shared_listeners=shared,
      tuning={s: {k: v for k, v in entry.items() if k != "params"}
              for s, entry in chosen.items()},
      ablation_info=ablation_info(ablations, kind),
      ablations_unchanged=(unchanged_ablations(chosen["adaptive"]["params"], ablations)
                           if "adaptive" in chosen else []),
      seconds=results["seconds"], requests=simulator.request_texts(world.prototypes))
  section["default_check"] = default_check(section)
  if kind != "background":
    section["long_term"] = dict(kind=kind, settings=_long_term_settings(config, kind),
                                fits=rankers)
  return section, results


def _long_term_settings(config, kind: str) -> dict:
  settings = config.get("long_term_settings", None)
  return dict(settings[kind]) if settings is not None and kind in settings else {}


def fit_long_term(config, world: simulator.World, plan: simulator.SessionPlan, label: str,
                  fits: dict, log: Callable[[str], None] = print
                  ) -> long_term_lib.LongTerm | None:
  """The learned mix ranker of `config.long_term` over `plan`'s sessions (None: background).

  Trained on the plan's earlier sessions alone (`plan.history_track` and
  `history_kind`): the studied sessions and the listeners' hidden state
  never reach it. Its statistics are stored in `fits[label]`.
  """
  kind = config.get("long_term", "background")
  if kind == "background":
    return None
  # Imported here: the session engine itself imports no trainer.
  from jplaylist.playlists import long_term as learned  # pylint: disable=g-import-not-at-top
  ranker, stats = learned.fit(kind, world.library.info.ids, plan.history_track,
                              plan.history_kind, _long_term_settings(config, kind),
                              seed=config.seed, log=log)
  log(f"long-term ranker ({kind}) on the {label} listeners' earlier sessions: "
      f"{stats['sequences']} sequences, {stats['items']} items, {stats['known_tracks']} of "
      f"{stats['num_tracks']} tracks seen")
  fits[label] = stats
  return ranker


def _plots(results: dict, names: Sequence[str], directory: str, section: dict,
           label: str) -> dict[str, str]:
  """The held-out run's plots (with 95% bands): title -> PNG path."""
  paths = plots_lib.study_plots(results, names, directory)
  entries = section["summary"]["metrics"]["listen_rate"]["strategies"]
  shown = [n for n in names if entries.get(n, {}).get("mean") is not None]
  paths["Held-out listen rate per strategy"] = plots_lib.plot_heldout(
      shown, [entries[n]["mean"] for n in shown], [entries[n]["lo"] for n in shown],
      [entries[n]["hi"] for n in shown], os.path.join(directory, "heldout.png"),
      title=f"Held-out listen rate, listener model {label}")
  return paths


def run_from_config(config, output_dir: str, log: Callable[[str], None] = print
                    ) -> tuple[dict, dict[str, str]]:
  """Runs the protocol under each listener model and writes one report.

  Writes to `output_dir`: summary.json ({"listener_models", "models": {model:
  section}}, a section as `run_protocol` returns it with "shuffle_rates"),
  report.md (a section per model), and per model `<model>/results.npz` (every
  held-out per-event record) with its plots.

  With several processes (`jax.distributed`) every process runs the study
  and process 0 alone writes.

  Returns:
    (summary, paths by name: "summary", "report", and "<model>/results" etc.).
  """
  writer = jax.process_index() == 0
  if writer:
    os.makedirs(output_dir, exist_ok=True)
  models = listener_models(config)
  summary = dict(listener_models=[m or "default" for m in models], models={})
  paths = {"summary": os.path.join(output_dir, "summary.json"),
           "report": os.path.join(output_dir, "report.md")}
  plots = {}
  for index, model in enumerate(models):
    label = model or "default"
    log(f"== listener model {label} ({index + 1} of {len(models)})")
    model_config = _with_listener_model(config, model)
    world = study.build_world(model_config, log)
    rates = simulator.shuffle_rates(jax.random.key(config.seed + 1), world,
                                    num_sessions=min(4096, 4 * config.num_sessions),
                                    with_oracle=False)
    log(f"shuffled playlists: {rates['early_skip']:.1%} skipped early, "
        f"{rates['skip_before_end']:.1%} before the end")
    section, results = run_protocol(model_config, world, log)
    section["shuffle_rates"] = rates
    summary["models"][label] = section
    directory = os.path.join(output_dir, label)
    names = section["names"]
    paths[f"{label}/results"] = os.path.join(directory, "results.npz")
    if not writer:
      continue
    os.makedirs(directory, exist_ok=True)
    np.savez_compressed(paths[f"{label}/results"], names=np.array(names),
                        **{k: v for k, v in results.items() if isinstance(v, np.ndarray)})
    plots[label] = _plots(results, names, directory, section, label)
    paths.update({f"{label}/{os.path.splitext(os.path.basename(p))[0]}": p
                  for p in plots[label].values()})
  if writer:
    with open(paths["summary"], "w") as f:
      json.dump(summary, f, indent=1)
    session_report.write_protocol_markdown(summary, plots, paths["report"])
  return summary, paths


# ------------------------------------------------------------------ claims


# The patent's claims measured: (name, variant, metric, what the claim expects).
CLAIMS = (
    ("text above behaviour adapts faster after a request", "adaptive[equal_weights]",
     "recovery/text"),
    ("text above behaviour: first listen after a request", "adaptive[equal_weights]",
     "first_listen/text"),
    ("recency weighting recovers faster after a switch (no request)", "adaptive[no_recency]",
     "recovery/no_text"),
    ("recency weighting recovers faster after a switch (with request)", "adaptive[no_recency]",
     "recovery/text"),
)


def claims(results: dict, names: Sequence[str], *, num_resamples: int = 2000,
           seed: int = 0) -> list[dict]:
  """Paired differences (adaptive - variant, events) behind the patent's claims.

  A negative difference means the adaptive default (text weighted above
  behaviour, recency decay) adapts in fewer events than the variant.
  """
  names = list(names)
  per_session = metrics.per_session_metrics(results)
  out = []
  for claim, variant, metric in CLAIMS:
    if "adaptive" not in names or variant not in names or metric not in per_session:
      continue
    values = per_session[metric]
    a, b = values.values[names.index("adaptive")], values.values[names.index(variant)]
    diff, lo, hi = metrics.paired_bootstrap(a, b, num_resamples, seed, weights=values.weights)
    out.append({"claim": claim, "metric": metric, "against": variant,
                "switches": int(np.sum(values.weights)),
                "adaptive": metrics.bootstrap_ci(a, num_resamples, seed,
                                                 weights=values.weights)[0],
                "variant": metrics.bootstrap_ci(b, num_resamples, seed,
                                                weights=values.weights)[0],
                "difference": diff, "lo": lo, "hi": hi})
  return out
