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
  processes              (a block of sessions each, records gathered:
                          jplaylist/session/distributed.py)
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
import time as time_lib
from typing import Any, Callable, Sequence

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from jplaylist import inference
from jplaylist import library_index
from jplaylist.session import background
from jplaylist.session import distributed
from jplaylist.session import examples
from jplaylist.session import listeners
from jplaylist.session import long_term as long_term_lib
from jplaylist.session import metrics
from jplaylist.session import simulator
from jplaylist.session import strategies as strategies_lib

CANDIDATES = ("playlist", "library")
# Strategies that need no learner: the study scores them itself.
BASELINES = ("initial", "shuffle", "popularity", "oracle")
# Learners that fuse with the long-term ranker (the others never read it).
FUSING = ("adaptive", "adaptive_mlp")
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
  # Weight of a rejected track in the background model every learner starts
  # from (`background.background_model`), against 1 for a listened one.
  background_reject_weight: float = background.REJECT_WEIGHT


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
             max_examples: int, forced_kinds=None, forced_fractions=None,
             long_term_table=None, long_term_user=None):
  """Runs one session of `strategy`; returns per-event records and its final AUC.

  Learners see only what a player observes: the candidates' embeddings and
  metadata, the session's text requests and outcomes, and the background
  model of the listener's earlier sessions (`plan.history_*`); the
  simulator's hidden state (taste, bag, noise, moods without a request)
  reaches only the oracle and the records. forced_kinds / forced_fractions
  ([E] int32 / float32, tests only): where forced_kinds[t] >= 0 the listener's
  outcome at event t is that kind and played fraction instead of `respond`'s.
  long_term_table: (items [N, F], known [N]) of a learned long-term ranker
  (`long_term.LongTerm`) and long_term_user: [F] this session's listener
  vector from their earlier sessions; adaptive and adaptive_mlp fuse its
  scores instead of the background direction. None: the background direction.
  """
  config = world.config
  library = world.library
  cand, initial = _candidates(world, plan, spec.candidates)
  playlist_only = spec.candidates == "playlist"
  # The whole library: no gather of [N, d] (nor of the listener's tables).
  cand_embeddings = library.embeddings[cand] if playlist_only else library.embeddings
  # The listener over the candidates, the session's constant terms folded in once.
  listener = listeners.session_tables(world, plan, cand if playlist_only else None)
  stats = strategies_lib.candidate_stats(cand_embeddings)
  num_cand = cand.shape[0]
  shuffle_key, events_key = jax.random.split(rng)
  shuffled = jax.random.uniform(shuffle_key, (num_cand,))
  popularity = library.popularity[cand]
  durations = library.duration_s
  prototypes = world.prototypes

  def true_logits(event, heard):
    # The listener's logits given what it heard (fatigue); P(accept) is their
    # sigmoid, taken only where needed (the served track, the oracle's best,
    # ranking metrics): a sigmoid over the whole library every event costs
    # more than the logits.
    return listeners.event_logits(world, listener, plan, event, heard)

  # Every learner starts from the slow background model of what this listener
  # did in earlier sessions, never from the simulator's hidden taste.
  start_taste = background.from_history(library.embeddings, plan.history_track,
                                        plan.history_kind,
                                        reject_weight=spec.background_reject_weight)
  state = strategies_lib.init_state(max_examples, cand_embeddings.shape[1], start_taste)
  # The learned ranker's scores are fixed for the session (it learns only
  # from earlier sessions): computed once, not per event.
  long_term = None
  if long_term_table is not None:
    long_term = long_term_lib.candidate_scores(*long_term_table, long_term_user,
                                               cand if playlist_only else None)

  def scores_of(state, logits, event, elapsed, key):
    """(scores [C], state): baselines need no learner; the oracle knows the logits."""
    fixed = {"initial": initial, "shuffle": shuffled, "popularity": popularity,
             "oracle": logits}
    if strategy in fixed:
      return fixed[strategy], state
    return strategies_lib.score(strategy, state, params, cand_embeddings, stats, event,
                                elapsed, key, num_newton=spec.num_newton, long_term=long_term)

  def step(carry, event):
    state, played, elapsed, heard = carry
    key = jax.random.fold_in(events_key, event)
    score_key, respond_key = jax.random.split(key)
    # A mood switch may come with a text request: an example before serving.
    request = plan.switch[event] & plan.text_request[event]
    state = strategies_lib.observe_text(state, prototypes.text[plan.prototype[event]],
                                        event, elapsed, valid=request)
    logits = true_logits(event, heard)
    scores, state = scores_of(state, logits, event, elapsed, score_key)
    available = ~played
    pick = _first_argmax(jnp.where(available, scores, -jnp.inf))
    track = cand[pick]
    served_p = jax.nn.sigmoid(logits[pick])
    kind, fraction, label = simulator.respond(respond_key, served_p, config)
    if forced_kinds is not None:  # the firewall test's observations
      forced = forced_kinds[event] >= 0
      kind = jnp.where(forced, forced_kinds[event], kind)
      fraction = jnp.where(forced, forced_fractions[event], fraction)
      label = jnp.asarray(examples.LABEL_OF_KIND, jnp.float32)[kind]
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
    heard = listeners.observe(world, heard, track)
    record = dict(served_prob=served_p, oracle_prob=oracle_p,
                  skipped=fraction < 1.0, early_skipped=fraction < config.skip_threshold,
                  listened=label > 0, kind=kind, track=track, ndcg=ndcg,
                  precision=precision)
    return (state, played, elapsed, heard), record

  carry = (state, jnp.zeros((num_cand,), bool), jnp.float32(0.0), listeners.init_state(world))
  (state, played, elapsed, heard), records = lax.scan(step, carry,
                                                      jnp.arange(config.num_events))
  # How well the session's final scores separate what the listener likes now.
  last = config.num_events - 1
  final_logits = true_logits(last, heard)
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
def _run_strategy(world, plan, variants, rng, *, strategy, spec, max_examples, mesh,
                  session_ids=None, long_term=None):
  """Records of every session ([V, B, ...]) for one strategy and V variants.

  `session_ids` [B] are the sessions' global indices (default 0..B-1): a
  session's draws are fold_in(rng, its index), whichever process or device
  runs it and however many sessions share the call. `long_term`: a
  `long_term.LongTerm` whose users are this call's B sessions, or None.
  """
  num_sessions = plan.num_sessions
  # Sessions carry their listener's long-term vector; the item table is shared.
  table = None if long_term is None else (long_term.items, long_term.known)
  users = None if long_term is None else long_term.users

  def local(plan_shard, keys, users_shard=None):
    def chunk(args):
      sessions, session_keys, session_users = args
      # Without a ranker, table and users are None: _session's default fusion.
      one = lambda params, p, k, u: _session(world, p, params, k, strategy=strategy,
                                             spec=spec, max_examples=max_examples,
                                             long_term_table=table, long_term_user=u)
      per_variant = jax.vmap(  # variants
          lambda params: jax.vmap(  # sessions
              lambda p, k, u: one(params, p, k, u))(sessions, session_keys, session_users))
      return per_variant(variants)
    size = keys.shape[0]
    per_chunk = min(spec.sessions_per_chunk, size)
    if size % per_chunk:
      per_chunk = size  # uneven: one chunk
    stacked = jax.tree.map(lambda x: x.reshape((size // per_chunk, per_chunk) + x.shape[1:]),
                           (plan_shard, keys, users_shard))
    out = lax.map(chunk, stacked)  # [chunks, V, per_chunk, ...]
    return jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1).reshape(
        (x.shape[1], size) + x.shape[3:]), out)

  if session_ids is None:
    session_ids = jnp.arange(num_sessions)
  keys = jax.vmap(lambda index: jax.random.fold_in(rng, index))(session_ids)
  if mesh is None:
    return local(plan, keys, users)
  spec_in = jax.sharding.PartitionSpec("sessions")
  if users is None:
    return jax.shard_map(local, mesh=mesh, in_specs=(spec_in, spec_in),
                         out_specs=jax.sharding.PartitionSpec(None, "sessions"),
                         check_vma=False)(plan, keys)
  return jax.shard_map(local, mesh=mesh, in_specs=(spec_in, spec_in, spec_in),
                       out_specs=jax.sharding.PartitionSpec(None, "sessions"),
                       check_vma=False)(plan, keys, users)


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
        variants: dict[str, Sequence[tuple[str, strategies_lib.StrategyParams]]] | None = None,
        long_term: long_term_lib.LongTerm | None = None,
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
    variants: strategy -> [(name, params)]: the variants a strategy runs
      instead of `params` (all in one compiled call), named "strategy[name]",
      or "strategy" where name is "" (`protocol` builds them from a grid).
    long_term: a learned long-term ranker over these sessions
      (`long_term.LongTerm`, users [B, F] in the plan's session order) that
      "adaptive" and "adaptive_mlp" fuse with instead of the background
      direction; None (default): the background direction.
    log: where progress lines go.

  Returns:
    dict with "names" (S strategy names, variants as "strategy[name]"),
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
  if long_term is not None:
    long_term.check(world.library.num_tracks, plan.num_sessions)
  slots = max_examples(plan)
  # Each process runs its block of sessions on its own devices; the records are
  # gathered after each strategy (jplaylist/session/distributed.py).
  split = distributed.blocks(plan.num_sessions)
  local_plan = split.take(plan)
  local_long_term = (None if long_term is None
                     else long_term.replace(users=split.take(long_term.users)))
  mesh = session_mesh(split.per_process)
  if split.process_count > 1 or split.padded_sessions > plan.num_sessions:
    log(split.describe())
  names, records, seconds = [], [], {}
  variants = dict(variants or {})
  unused = sorted(set(variants) - set(spec.strategies))
  if unused:
    raise ValueError(f"variants of {unused}, which are not among the strategies "
                     f"{spec.strategies}")
  for strategy in spec.strategies:
    if strategy in variants:
      if not variants[strategy]:
        raise ValueError(f"variants[{strategy!r}] is empty")
      runs = [(f"[{name}]" if name else "", p) for name, p in variants[strategy]]
    else:
      runs = [("", params)]
    if strategy == "adaptive" and sweep:
      runs += [(f"[{name}]", params.with_values(**overrides))
               for name, overrides in sweep.items()]
    start = time_lib.perf_counter()
    out = _run_strategy(world, local_plan, stack_variants([v for _, v in runs]), rng,
                        strategy=strategy, spec=spec, max_examples=slots, mesh=mesh,
                        session_ids=split.session_ids,
                        long_term=local_long_term if strategy in FUSING else None)
    out = distributed.gather(jax.device_get(out), split)
    seconds[strategy] = time_lib.perf_counter() - start
    dropped = int(np.max(out.pop("dropped_examples")))
    if dropped:
      raise RuntimeError(f"{strategy}: {dropped} examples did not fit {slots} history slots")
    for index, (suffix, _) in enumerate(runs):
      names.append(strategy + suffix)
      records.append({k: v[index] for k, v in out.items()})
    log(f"{strategy}: {plan.num_sessions} sessions x {world.config.num_events} events"
        f" x {len(runs)} variant(s) in {seconds[strategy]:.1f} s")
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
  """The tuned, held-out study of a config (`protocol.run_from_config`)."""
  # Imported here: protocol builds on this module.
  from jplaylist.session import protocol  # pylint: disable=g-import-not-at-top
  return protocol.run_from_config(config, output_dir, log)


def headline(summary: dict, strategies: Sequence[str] | None = None) -> list[str]:
  """Held-out skip and listen rates per model and strategy (`report.headline`)."""
  from jplaylist.session import report  # pylint: disable=g-import-not-at-top
  return report.headline(summary, strategies)
