"""One compiled study: strategies x sessions x events in a single jit call.

A study serves every simulated session (`simulator.SessionPlan`) event by
event: a strategy scores the candidates (the session's playlist or the whole
library), the best unplayed one is served, the simulated listener reacts
(`simulator.respond`), and the reaction becomes a weighted example of the
session (`examples.History`) for the next event, as the patent's adaptive
playlisting does after every listen, skip and text request.

  lax.scan over events  (the session's state: history, played tracks, fit)
  vmap over sessions    (in chunks of `sessions_per_chunk`, lax.map)
  shard_map over devices (sessions split over every local device)
  vmap over variants    (a hyper-parameter sweep of one strategy is one call)

Per event and session it records the served track's true listen probability,
the best available one (the oracle's), the skip outcome, and optionally the
nDCG@10 and precision@10 of the re-sorted remainder; at the end of each
session the AUC of its scores against the listener's true preferences.
`jplaylist.session.metrics.summarize` turns the records into per-strategy
means with paired bootstrap confidence intervals.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time as time_lib
from typing import Any, Callable, Sequence

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from jplaylist import inference
from jplaylist import library_index
from jplaylist.session import metrics
from jplaylist.session import report as session_report
from jplaylist.session import simulator
from jplaylist.session import strategies as strategies_lib

CANDIDATES = ("playlist", "library")
# Strategies that need no learner: the study scores them itself.
BASELINES = ("initial", "shuffle", "popularity", "oracle")
# Mean track length when served tracks' durations are unknown (elapsed time).
TRACK_SECONDS = 210.0


@dataclasses.dataclass(frozen=True)
class StudySpec:
  """What a study runs (static: each strategy is its own traced program)."""
  strategies: tuple[str, ...]
  candidates: str = "playlist"
  ranking_metrics: bool = True
  sessions_per_chunk: int = 500
  # Newton iterations of each refit, warm-started from the previous event's
  # fit (cold fits need about 8 for 1e-4 parity with scikit-learn).
  num_newton: int = 3
  # The end-of-session AUC sorts the candidates; over more than this many it
  # is estimated on an evenly strided subset of them (unbiased, far cheaper).
  auc_max_candidates: int = 1000


def _candidates(world: simulator.World, plan: simulator.SessionPlan, candidates: str):
  """(candidate track ids [C], initial-order scores [C]) for one session."""
  if candidates == "playlist":
    length = plan.playlist.shape[0]
    return plan.playlist, -jnp.arange(length, dtype=jnp.float32)
  num_tracks = world.library.num_tracks
  # The playlist first, in order, then the rest of the library by popularity.
  rank = jnp.full((num_tracks,), -1.0).at[plan.playlist].set(
      plan.playlist.shape[0] - jnp.arange(plan.playlist.shape[0], dtype=jnp.float32))
  return jnp.arange(num_tracks), jnp.where(rank >= 0, 1.0 + rank, world.library.popularity)


def _first_argmax(x):
  """argmax of a 1-D array (the first of ties) as two plain reductions.

  XLA on CPU lowers jnp.argmax to a variadic (value, index) reduction that
  costs several times a max; over a 10,000-track library it dominated a step.
  """
  best = jnp.max(x)
  return jnp.min(jnp.where(x == best, jnp.arange(x.shape[0]), x.shape[0] - 1))


def _session(world: simulator.World, plan: simulator.SessionPlan,
             params: strategies_lib.StrategyParams, rng, *, strategy: str, spec: StudySpec,
             max_examples: int):
  """Runs one session of `strategy`; returns per-event records and its final AUC."""
  config = world.config
  library = world.library
  cand, initial = _candidates(world, plan, spec.candidates)
  if spec.candidates == "playlist":
    cand_embeddings = library.embeddings[cand]
    cand_features = world.features[cand]
  else:  # the whole library: no gather of [N, d]
    cand_embeddings, cand_features = library.embeddings, world.features
  stats = strategies_lib.candidate_stats(cand_embeddings)
  num_cand = cand.shape[0]
  shuffle_key, events_key = jax.random.split(rng)
  shuffled = jax.random.uniform(shuffle_key, (num_cand,))
  popularity = library.popularity[cand]
  durations = library.duration_s
  prototypes = world.prototypes

  def true_logits(event):
    # The listener's logits; P(accept) is their sigmoid, taken only where
    # needed (the served track, the oracle's best, ranking metrics): a
    # sigmoid over the whole library every event costs more than the product.
    state = simulator.choice_state(world, plan, event)
    return cand_features @ state.coefficients + state.bias

  state = strategies_lib.init_state(max_examples, cand_embeddings.shape[1], plan.taste)

  def scores_of(state, logits, event, elapsed, key):
    """(scores [C], state): baselines need no learner; the oracle knows the logits."""
    fixed = {"initial": initial, "shuffle": shuffled, "popularity": popularity,
             "oracle": logits}
    if strategy in fixed:
      return fixed[strategy], state
    return strategies_lib.score(strategy, state, params, cand_embeddings, stats, event,
                                elapsed, key, num_newton=spec.num_newton)

  def step(carry, event):
    state, played, elapsed = carry
    key = jax.random.fold_in(events_key, event)
    score_key, respond_key = jax.random.split(key)
    # A mood switch may come with a text request: an example before serving.
    request = plan.switch[event] & plan.text_request[event]
    state = strategies_lib.observe_text(state, prototypes.text[plan.prototype[event]],
                                        event, elapsed, valid=request)
    logits = true_logits(event)
    scores, state = scores_of(state, logits, event, elapsed, score_key)
    available = ~played
    pick = _first_argmax(jnp.where(available, scores, -jnp.inf))
    track = cand[pick]
    served_p = jax.nn.sigmoid(logits[pick])
    kind, fraction, label = simulator.respond(respond_key, served_p, config)
    oracle_p = jax.nn.sigmoid(jnp.max(jnp.where(available, logits, -jnp.inf)))
    if spec.ranking_metrics:
      ndcg, precision = metrics.ranking_metrics(scores, jax.nn.sigmoid(logits), available)
    else:
      ndcg = precision = jnp.float32(jnp.nan)
    # The example is stamped when the track ended (or was skipped), so that
    # time decay does not count a quick skip as younger than a full listen.
    elapsed = elapsed + fraction * durations[track]
    state = strategies_lib.observe_track(state, params, library.embeddings[track], kind,
                                         event, elapsed)
    played = played.at[pick].set(True)
    record = dict(served_prob=served_p, oracle_prob=oracle_p,
                  skipped=fraction < 1.0, early_skipped=fraction < config.skip_threshold,
                  listened=label > 0, kind=kind, track=track, ndcg=ndcg,
                  precision=precision)
    return (state, played, elapsed), record

  carry = (state, jnp.zeros((num_cand,), bool), jnp.float32(0.0))
  (state, played, elapsed), records = lax.scan(step, carry,
                                               jnp.arange(config.num_events))
  # How well the session's final scores separate what the listener likes now.
  last = config.num_events - 1
  final_logits = true_logits(last)
  final_scores, _ = scores_of(state, final_logits, last + 1, elapsed,
                             jax.random.fold_in(events_key, config.num_events))
  subset = slice(None)
  if num_cand > spec.auc_max_candidates:
    stride = num_cand // spec.auc_max_candidates
    subset = (jax.random.randint(jax.random.fold_in(shuffle_key, 1), (), 0, stride)
              + stride * jnp.arange(spec.auc_max_candidates))
  records["auc"] = metrics.session_auc(final_scores[subset], final_logits[subset] >= 0.0,
                                       ~played[subset])
  records["dropped_examples"] = state.history.num_dropped
  return records


def max_examples(plan: simulator.SessionPlan) -> int:
  """History slots a study needs: every event plus the most text requests of a session."""
  requests = np.asarray(jnp.sum(plan.switch & plan.text_request, axis=1))
  return int(plan.switch.shape[1] + (requests.max() if requests.size else 0))


@functools.partial(jax.jit, static_argnames=("strategy", "spec", "max_examples", "mesh"))
def _run_strategy(world, plan, variants, rng, *, strategy, spec, max_examples, mesh):
  """Records of every session ([V, B, ...]) for one strategy and V variants."""
  num_sessions = plan.num_sessions

  def local(plan_shard, keys):
    def chunk(args):
      sessions, session_keys = args
      per_variant = jax.vmap(  # variants
          lambda params: jax.vmap(  # sessions
              lambda p, k: _session(world, p, params, k, strategy=strategy, spec=spec,
                                    max_examples=max_examples))(sessions, session_keys))
      return per_variant(variants)
    size = keys.shape[0]
    per_chunk = min(spec.sessions_per_chunk, size)
    if size % per_chunk:
      per_chunk = size  # uneven: one chunk
    stacked = jax.tree.map(lambda x: x.reshape((size // per_chunk, per_chunk) + x.shape[1:]),
                           (plan_shard, keys))
    out = lax.map(chunk, stacked)  # [chunks, V, per_chunk, ...]
    return jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1).reshape(
        (x.shape[1], size) + x.shape[3:]), out)

  keys = jax.random.split(rng, num_sessions)
  if mesh is None:
    return local(plan, keys)
  spec_in = jax.sharding.PartitionSpec("sessions")
  return jax.shard_map(local, mesh=mesh, in_specs=(spec_in, spec_in),
                       out_specs=jax.sharding.PartitionSpec(None, "sessions"),
                       check_vma=False)(plan, keys)


def session_mesh(num_sessions: int) -> jax.sharding.Mesh | None:
  """A 1-D mesh over the local devices that divide the sessions evenly (None: one)."""
  devices = jax.local_devices()
  count = max(c for c in range(1, len(devices) + 1) if num_sessions % c == 0)
  return None if count == 1 else jax.sharding.Mesh(np.array(devices[:count]), ("sessions",))


def stack_variants(variants: Sequence[strategies_lib.StrategyParams]
                   ) -> strategies_lib.StrategyParams:
  return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x, jnp.float32) for x in xs]),
                      *variants)


def run(world: simulator.World, plan: simulator.SessionPlan, spec: StudySpec, rng, *,
        params: strategies_lib.StrategyParams | None = None,
        sweep: dict[str, dict[str, float]] | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
  """Runs every strategy of `spec` (and the sweep's variants) on the same sessions.

  Args:
    world: library, prototypes, simulator config.
    plan: B sessions (`simulator.sample_sessions`).
    spec: strategies, candidates, options.
    rng: key; every strategy sees the same listener draws per session and event.
    params: the learners' settings (default `StrategyParams.create()`).
    sweep: extra variants of the "adaptive" strategy: name -> field overrides;
      all run in one compiled call with the default.
    log: where progress lines go.

  Returns:
    dict with "names" (S strategy names, sweep variants as "adaptive[name]"),
    per-event arrays [S, B, E] (served_prob, oracle_prob, skipped,
    early_skipped, listened, kind, track, ndcg, precision), "auc" [S, B],
    "switch" and "switch_text" [B, E], and "seconds" per strategy.
  """
  if spec.candidates not in CANDIDATES:
    raise ValueError(f"candidates={spec.candidates!r}: expected one of {CANDIDATES}")
  known = strategies_lib.STRATEGIES + BASELINES
  unknown = set(spec.strategies) - set(known)
  if unknown:
    raise ValueError(f"unknown strategies {sorted(unknown)}; known: {sorted(known)}")
  num_candidates = (plan.playlist.shape[1] if spec.candidates == "playlist"
                    else world.library.num_tracks)
  if world.config.num_events > num_candidates:
    raise ValueError(f"{world.config.num_events} events per session but only "
                     f"{num_candidates} candidates ({spec.candidates}): every event serves "
                     "an unplayed track")
  params = params or strategies_lib.StrategyParams.create()
  slots = max_examples(plan)
  mesh = session_mesh(plan.num_sessions)
  names, records, seconds = [], [], {}
  for strategy in spec.strategies:
    variants = [("", params)]
    if strategy == "adaptive" and sweep:
      variants += [(f"[{name}]", params.with_values(**overrides))
                   for name, overrides in sweep.items()]
    start = time_lib.perf_counter()
    out = _run_strategy(world, plan, stack_variants([v for _, v in variants]), rng,
                        strategy=strategy, spec=spec, max_examples=slots, mesh=mesh)
    out = jax.device_get(out)
    seconds[strategy] = time_lib.perf_counter() - start
    dropped = int(np.max(out.pop("dropped_examples")))
    if dropped:
      raise RuntimeError(f"{strategy}: {dropped} examples did not fit {slots} history slots")
    for index, (suffix, _) in enumerate(variants):
      names.append(strategy + suffix)
      records.append({k: v[index] for k, v in out.items()})
    log(f"{strategy}: {plan.num_sessions} sessions x {world.config.num_events} events"
        f" x {len(variants)} variant(s) in {seconds[strategy]:.1f} s")
  results = {k: np.stack([r[k] for r in records]) for k in records[0]}
  results["switch"] = np.asarray(plan.switch)
  results["switch_text"] = np.asarray(plan.switch & plan.text_request)
  results["names"] = names
  results["seconds"] = seconds
  return results


# ------------------------------------------------------------- from a config


def build_world(config, log: Callable[[str], None] = print) -> simulator.World:
  """Library, prototypes and calibrated simulator of a `configs/session_study.py` config."""
  library_key, prototype_key, world_key, calibrate_key = jax.random.split(
      jax.random.key(config.seed), 4)
  spec = config.library
  if spec.kind == "synthetic":
    library = simulator.synthetic_library(library_key, spec.num_tracks, spec.dim,
                                          spec.num_clusters)
  elif spec.kind == "demo":
    if not spec.index:
      raise ValueError("library.index: give the .npz written by launch.embed")
    library = simulator.library_from_index(library_index.load(spec.index), seed=config.seed)
  else:
    raise ValueError(f"library.kind={spec.kind!r}: expected synthetic or demo")
  prototypes = simulator.make_prototypes(
      prototype_key, library, spec.num_prototypes, method=spec.prototypes,
      attribute_names=tuple(spec.attribute_names) or None,
      min_tracks=min(10, max(2, library.num_tracks // (4 * spec.num_prototypes))))
  if spec.text_workdir:
    model = inference.load(spec.text_workdir)
    prototypes = simulator.with_text_embeddings(prototypes, model.embed_text)
    log(f"requests embedded by {spec.text_workdir}: e.g. "
        f"{simulator.request_texts(prototypes)[:3]}")
  sim = dict(config.sim)
  sim_config = simulator.SimConfig(num_prototypes=prototypes.num_prototypes, **sim)
  sim_config = sim_config.replace(active_per_session=min(sim_config.active_per_session,
                                                         prototypes.num_prototypes),
                                  bag_size=min(sim_config.bag_size, prototypes.num_prototypes))
  world = simulator.make_world(world_key, library, prototypes, sim_config)
  if config.calibrate:
    world = world.replace(config=simulator.calibrate(
        calibrate_key, world, early_skip_rate=config.early_skip_rate,
        skip_before_end_rate=config.skip_before_end_rate))
  log(f"library: {library.num_tracks} tracks, d={library.embeddings.shape[1]}, "
      f"{prototypes.num_prototypes} prototypes ({spec.prototypes})")
  return world


def run_from_config(config, output_dir: str, log: Callable[[str], None] = print
                    ) -> tuple[dict, dict[str, str]]:
  """Builds the world, runs the study, and writes results, summary and report.

  Writes to `output_dir`: results.npz (every per-event record), summary.json
  (means with 95% CIs and paired differences against the baseline),
  report.md with curves.png and adaptation.png, shuffle_rates.json.

  Returns:
    (summary, paths by name).
  """
  os.makedirs(output_dir, exist_ok=True)
  world = build_world(config, log)
  rates = simulator.shuffle_rates(jax.random.key(config.seed + 1), world,
                                  num_sessions=min(4096, 4 * config.num_sessions),
                                  with_oracle=False)
  log(f"shuffled playlists: {rates['early_skip']:.1%} skipped early, "
      f"{rates['skip_before_end']:.1%} before the end")
  plan_key, study_key = jax.random.split(jax.random.key(config.seed + 2))
  plan = simulator.sample_sessions(plan_key, config.num_sessions, world)
  spec = StudySpec(strategies=tuple(config.strategies), candidates=config.candidates,
                   ranking_metrics=config.ranking_metrics,
                   sessions_per_chunk=config.sessions_per_chunk)
  results = run(world, plan, spec, study_key, sweep={k: dict(v) for k, v in
                                                     dict(config.sweep).items()}, log=log)
  names = results["names"]
  summary = metrics.summarize(results, names, config.baseline if config.baseline in names
                              else None, num_resamples=config.num_resamples,
                              seed=config.seed)
  summary["claims"] = claims(results, names, num_resamples=config.num_resamples,
                             seed=config.seed)
  summary["shuffle_rates"] = rates
  summary["seconds"] = results["seconds"]
  summary["requests"] = simulator.request_texts(world.prototypes)
  paths = {"results": os.path.join(output_dir, "results.npz"),
           "summary": os.path.join(output_dir, "summary.json"),
           "report": os.path.join(output_dir, "report.md")}
  np.savez_compressed(paths["results"], names=np.array(names),
                      **{k: v for k, v in results.items() if isinstance(v, np.ndarray)})
  with open(paths["summary"], "w") as f:
    json.dump(summary, f, indent=1)
  plots = {
      "Metrics over events": session_report.plot_curves(
          metrics.per_event_curves(results), os.path.join(output_dir, "curves.png"), names),
      "Adaptation after mood switches": session_report.plot_adaptation(
          metrics.adaptation_curves(results), os.path.join(output_dir, "adaptation.png"),
          names)}
  session_report.write_markdown(summary, plots, paths["report"])
  with open(paths["report"], "a") as f:
    f.write("\n" + "\n".join(claims_markdown(summary["claims"])) + "\n")
  paths.update(curves=plots["Metrics over events"],
               adaptation=plots["Adaptation after mood switches"])
  return summary, paths


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


def claims_markdown(rows: list[dict]) -> list[str]:
  if not rows:
    return []
  lines = ["## The patent's claims, measured", "",
           "Events until adaptation after a mood switch (lower is faster); difference = "
           "adaptive default minus the variant, paired over sessions [95% CI].", "",
           "| claim | metric | switches | adaptive | variant | difference [95% CI] |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['claim']} | {r['metric']} vs {r['against']} | {r['switches']} | "
                 f"{r['adaptive']:.2f} | {r['variant']:.2f} | {r['difference']:+.2f} "
                 f"[{r['lo']:+.2f}, {r['hi']:+.2f}] |")
  return lines


def headline(summary: dict, strategies: Sequence[str] = ("adaptive", "initial", "shuffle",
                                                         "oracle")) -> list[str]:
  """Lines of skip rate and expected listen rate per strategy, with 95% CIs."""
  lines = []
  table = summary["metrics"]
  for name in strategies:
    parts = []
    for metric, label in (("skip_rate", "skip rate"), ("listen_rate", "listen rate")):
      entry = table.get(metric, {}).get("strategies", {}).get(name)
      if entry and entry["mean"] is not None:
        parts.append(f"{label} {entry['mean']:.3f} [{entry['lo']:.3f}, {entry['hi']:.3f}]")
    if parts:
      lines.append(f"{name}: " + ", ".join(parts))
  return lines
