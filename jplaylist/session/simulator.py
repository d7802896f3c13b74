"""Simulated listeners for the adaptive-playlisting study (WO2024043931A1).

The patent's playlist adapts during a session to what the user does: tracks
listened to, skipped, liked or disliked, and natural-language requests ("switch
to jazz"). This module supplies the users. Pieces (`Library` lives in
`session/library.py` and `Prototypes` in `session/prototypes.py`; both are
re-exported here so `simulator.X` keeps working):

  `Library`     tracks: L2-normalised embeddings [N, d], popularity, durations,
                and host-side ids and categorical attributes. `synthetic_library`
                (clusters on the sphere, for tests and benchmarks) or
                `library_from_index` (an index written by launch/embed.py).
  `Prototypes`  interests: K unit centres in the embedding space, a text
                embedding of the request naming each ("switch to sad jazz"),
                and names. `make_prototypes`: k-means (`kmeans`, in JAX) or
                attribute combinations.
  `World`       library + prototypes + `SimConfig`, with the track tables
                every event reads: features [N, K + r] = [track-prototype
                cosine, per-listener noise features].
  `SessionPlan` everything random about B sessions, drawn up front
                (`sample_sessions`): each listener's bag of prototypes and
                long-term taste, the prototypes one session activates, the
                current mood at each event with its switches and text requests,
                the initial playlist a production system would seed, the
                listener's noise, and the observable outcomes of the
                listener's `history_sessions` earlier sessions (the input of
                the background model, `session/background.py`).

Choice model. At event t of a session in mood k_t the listener accepts track n
(plays it past the majority) with probability, for `listener_model` "embedding",

  p = sigmoid(slope * cos(e_n, c_{k_t}) + taste_weight * cos(e_n, taste)
              + taste_noise * e_n . g + bias + session_bias),

g a per-listener random direction scaled so that e_n . g has unit variance over
the library; "attributes" and "mixture" listeners, popularity and fatigue are in
`session/listeners.py`. Per event `true_probabilities` costs O(N (K + r)) from
precomputed track tables (no [N, d] work). `respond` turns p into an outcome: an
accepted track is played to the end (a LIKE with `like_probability`, or left
after the majority with `late_skip_probability`); a rejected one is skipped in
the first `skip_threshold` of the track (an early SKIP, a DISLIKE with
`dislike_probability`) with probability `early_skip_share`, else later but
before the majority (PARTIAL).

Calibration. `calibrate` fits `bias` and `early_skip_share` so that a shuffled
playlist (the session's own seeded playlist in random order, or random library
tracks) gives the skip rates real services report: in Spotify's Music Streaming
Sessions dataset (Brost et al., 2019) about 24% of tracks are skipped within 5
seconds and 45-50% before the end. The defaults are its fit on
`synthetic_library()` with default prototypes (see `SimConfig`); calibrate a
real library (`library_from_index`) the same way. A shuffle of random library
tracks ("library") is skipped far more often (about 38% early, 86% before the
end with the defaults): pass reference="library" to calibrate to that instead.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jplaylist.session import examples
from jplaylist.session import listeners
from jplaylist.session.listeners import (  # re-exported: simulator.X keeps working
    LISTENER_MODELS, ChoiceState, ListenerState, choice_state, listen_probability)
# Outcome kinds `respond` and the shuffle rates use.
from jplaylist.session.examples import DISLIKE, LIKE, LISTEN, PARTIAL

SEEDINGS = ("seed_neighbours", "popularity")
REFERENCES = ("playlist", "library")
from jplaylist.session.library import (  # re-exported: simulator.X keeps working
    SYNTHETIC_GENRES, SYNTHETIC_MOODS, Library, LibraryInfo, _attribute_value,
    _zipf_popularity, attribute_one_hot, library_from_index, normalize as _normalize,
    synthetic_library)
from jplaylist.session.prototypes import (  # re-exported
    NAME_ATTRIBUTES, KMeansResult, Prototypes, _describe, _kmeans_once, _name_attributes,
    _squared_distances, kmeans, make_prototypes, request_texts, with_text_embeddings)


# ------------------------------------------------------------------ config and world


@flax.struct.dataclass
class SimConfig:
  """Simulator settings. Shapes and modes are static; the rest are floats
  (pytree leaves: a sweep can vmap over them).

  bias and early_skip_share are `calibrate`'s fit on `synthetic_library()` with
  `make_prototypes(rng, library, 32)` and the other defaults: a shuffled
  seeded playlist then gives 24% early skips and 47.5% skips before the end.
  """
  num_events: int = flax.struct.field(pytree_node=False, default=50)  # E per session
  num_prototypes: int = flax.struct.field(pytree_node=False, default=32)  # K to make
  bag_size: int = flax.struct.field(pytree_node=False, default=6)  # M prototypes a listener likes
  # A <= M prototypes a session visits (mood switches move between them).
  active_per_session: int = flax.struct.field(pytree_node=False, default=3)
  playlist_length: int = flax.struct.field(pytree_node=False, default=100)  # L seeded tracks
  seeding: str = flax.struct.field(pytree_node=False, default="seed_neighbours")  # or "popularity"
  noise_rank: int = flax.struct.field(pytree_node=False, default=16)  # r; fixed by make_world
  switch_probability: float = 0.04   # mood switch before each event after the first
  text_probability: float = 0.5      # a switch comes with a text request
  seed_sharpness: float = 20.0       # seed track ~ softmax(sharpness * cos to the first mood)
  slope: float = 8.0                 # logit per unit cosine to the current mood's centre
  bias: float = -3.80                # calibrated
  taste_weight: float = 2.0          # logit per unit cosine to the long-term taste
  taste_noise: float = 1.0           # std of the listener's own linear taste deviation
  session_noise: float = 0.5         # std of a per-session logit offset
  early_skip_share: float = 0.567    # calibrated: P(skip < skip_threshold | rejected)
  late_skip_probability: float = 0.1  # P(left after the majority | accepted, not liked)
  like_probability: float = 0.1      # P(like | accepted)
  dislike_probability: float = 0.05  # P(dislike | early skip)
  skip_threshold: float = 0.05       # played fraction of an early skip
  majority: float = 0.5              # played fraction above which a track counts as listened
  # The listener model (`session/listeners.py`): "embedding", "attributes" or "mixture".
  listener_model: str = flax.struct.field(pytree_node=False, default="embedding")
  # "attributes": the attributes preferred over; () = those naming prototypes.
  listener_attributes: tuple[str, ...] = flax.struct.field(pytree_node=False, default=())
  mixture_sharpness: float = 0.0     # "mixture": 0 = max over the bag, s > 0 = soft max
  popularity_weight: float = 0.0     # logit per std of log popularity
  fatigue_weight: float = 0.0        # logit per recently served track of the same group
  fatigue_decay: float = 0.8         # per served track, of the fatigue count
  # H earlier sessions of each listener before the studied one (`SessionPlan.history_*`).
  history_sessions: int = flax.struct.field(pytree_node=False, default=4)


@flax.struct.dataclass
class World:
  """What every event reads: library, prototypes, config and track tables.

  Attributes:
    features: [N, K + r] float32: cos(e_n, c_k) for the K prototypes, then
      e_n @ noise_projection (r noise features of unit RMS over the library,
      divided by sqrt(r)).
    basis: [K + r, d] float32: the centres, then the noise projection's
      transpose; features = embeddings @ basis.T.
    listener: the choice model's track tables (`listeners.make_tables`).
  """
  library: Library
  prototypes: Prototypes
  features: jax.Array
  basis: jax.Array
  config: SimConfig
  listener: listeners.ListenerTables  # the listener model's track tables

  @property
  def num_prototypes(self) -> int:
    return self.prototypes.centres.shape[0]


def make_world(rng, library: Library, prototypes: Prototypes,
               config: SimConfig = SimConfig()) -> World:
  """Checks the config against the prototypes and precomputes the track tables."""
  num_prototypes = prototypes.num_prototypes
  if not 1 <= config.active_per_session <= config.bag_size <= num_prototypes:
    raise ValueError(f"need 1 <= active_per_session ({config.active_per_session}) <= bag_size "
                     f"({config.bag_size}) <= number of prototypes ({num_prototypes})")
  if config.seeding not in SEEDINGS:
    raise ValueError(f"seeding={config.seeding!r}: expected one of {SEEDINGS}")
  if config.playlist_length > library.num_tracks:
    raise ValueError(f"playlist_length={config.playlist_length} > {library.num_tracks} tracks")
  gaussian = jax.random.normal(rng, (library.embeddings.shape[1], config.noise_rank))
  rms = jnp.sqrt(jnp.mean((library.embeddings @ gaussian)**2, axis=0))
  projection = gaussian / rms / np.sqrt(config.noise_rank)
  basis = jnp.concatenate([prototypes.centres, projection.T]).astype(jnp.float32)
  features = library.embeddings @ basis.T
  tables = listeners.make_tables(jax.random.fold_in(rng, 1), library, prototypes, config,
                                 features)
  return World(library=library, prototypes=prototypes, features=features, basis=basis,
               config=config, listener=tables)


# ------------------------------------------------------------------ sessions


@flax.struct.dataclass
class SessionPlan:
  """B sessions drawn up front; index one with `plan.session(b)`.

  Attributes:
    prototype: [B, E] int32 current mood (prototype index) at each event.
    switch: [B, E] bool the mood switched just before this event (never at 0).
    text_request: [B, E] bool the switch came with a text request (text
      embedding `prototypes.text[prototype]`).
    active: [B, A] int32 the prototypes this session visits; active[:, 0]
      is the first mood.
    bag: [B, M] int32 the listener's prototypes.
    bag_weights: [B, M] float32 taste = sum_m bag_weights[m] centres[bag[m]].
    taste: [B, d] float32 long-term taste, unit norm.
    playlist: [B, L] int32 initial playlist (seed first, then its neighbours by
      cosine; or L tracks drawn without replacement by popularity).
    seed_track: [B] int32 the seed (-1 with popularity seeding).
    bias_offset: [B] float32 the session's logit offset.
    noise_weights: [B, r] float32 the listener's taste deviation, N(0, 1).
    history_track: [B, H, E] int32 the tracks of the listener's H earlier
      sessions (`config.history_sessions`): each earlier session's own seeded
      playlist served in order by the service's non-adaptive player.
    history_kind: [B, H, E] int32 the listener's reactions to them (`respond`
      under the same listener, each earlier session with its own moods,
      playlist and offset).
    history_fraction: [B, H, E] float32 the played fractions.

  The history fields are what a service observed before the studied session
  (the background model's input, `jplaylist.session.background`); the rest
  but the playlist and the text requests (their events and prototypes) is the
  simulator's hidden state, which no strategy but the oracle may read. The
  history fields are None in a plan that has none (an earlier session itself).
  """
  prototype: jax.Array
  switch: jax.Array
  text_request: jax.Array
  active: jax.Array
  bag: jax.Array
  bag_weights: jax.Array
  taste: jax.Array
  playlist: jax.Array
  seed_track: jax.Array
  bias_offset: jax.Array
  noise_weights: jax.Array
  history_track: jax.Array | None = None
  history_kind: jax.Array | None = None
  history_fraction: jax.Array | None = None

  @property
  def num_sessions(self) -> int:
    return self.prototype.shape[0]

  def session(self, index) -> SessionPlan:
    return jax.tree.map(lambda x: x[index], self)


# A listener's hidden traits, shared by all their sessions; the other fields of
# a SessionPlan are drawn per session.
LISTENER_FIELDS = ("bag", "bag_weights", "taste", "noise_weights")


def _sample_session(rng, world: World, listener: SessionPlan | None = None) -> SessionPlan:
  """One session (no history fields); with `listener`, another session of that
  listener: its LISTENER_FIELDS are kept and only the session's draws are new."""
  config, library = world.config, world.library
  num_events, num_active = config.num_events, config.active_per_session
  num_prototypes, num_tracks = world.num_prototypes, library.num_tracks
  # One uniform draw sliced and transformed: every jax.random call would add
  # its own inlined threefry to the compile (about 0.3 s each on CPU).
  sizes = dict(bag=num_prototypes, weights=config.bag_size, active=config.bag_size,
               switch=num_events, text=num_events, step=num_events, seed=num_tracks,
               bias=1, noise=2 * config.noise_rank)
  uniform = jax.random.uniform(rng, (sum(sizes.values()),), minval=1e-7, maxval=1.0)
  draws = dict(zip(sizes, jnp.split(uniform, np.cumsum(list(sizes.values()))[:-1])))
  gumbel = lambda name: -jnp.log(-jnp.log(draws[name]))
  top_k = lambda logits, k: lax.top_k(logits, k)[1].astype(jnp.int32)

  bag = top_k(gumbel("bag"), config.bag_size)  # M of K without replacement
  weights = -jnp.log(draws["weights"])  # Exp(1); normalised: Dirichlet(1)
  if listener is not None:  # active and taste are invariant to the weights' scale
    bag, weights = listener.bag, listener.bag_weights
  taste = weights @ world.prototypes.centres[bag]
  norm = jnp.maximum(jnp.linalg.norm(taste), 1e-12)
  active = bag[top_k(jnp.log(weights) + gumbel("active"), num_active)]  # ~ weights
  later = jnp.arange(num_events) > 0
  switch = later & (draws["switch"] < config.switch_probability) & (num_active > 1)
  text = switch & (draws["text"] < config.text_probability)
  # Each switch moves to one of the other active prototypes, uniformly.
  step = 1 + jnp.floor(draws["step"] * (num_active - 1)).astype(jnp.int32)
  position = jnp.cumsum(jnp.where(switch, step, 0)) % num_active
  if config.seeding == "seed_neighbours":
    seed = jnp.argmax(config.seed_sharpness * world.features[:, active[0]]
                      + gumbel("seed")).astype(jnp.int32)
    cosine = library.embeddings @ library.embeddings[seed]
    playlist = top_k(cosine.at[seed].set(jnp.inf), config.playlist_length)
  else:
    seed = jnp.int32(-1)
    playlist = top_k(jnp.log(jnp.maximum(library.popularity, 1e-30)) + gumbel("seed"),
                     config.playlist_length)
  # Box-Muller: normals from pairs of uniforms.
  radius, angle = jnp.split(draws["noise"], 2)
  noise = jnp.sqrt(-2.0 * jnp.log(radius)) * jnp.cos(2.0 * jnp.pi * angle)
  bias_offset = jax.scipy.special.ndtri(draws["bias"][0])
  plan = SessionPlan(
      prototype=active[position], switch=switch, text_request=text, active=active, bag=bag,
      bag_weights=weights / norm, taste=taste / norm, playlist=playlist, seed_track=seed,
      bias_offset=config.session_noise * bias_offset, noise_weights=noise)
  if listener is not None:
    plan = plan.replace(**{name: getattr(listener, name) for name in LISTENER_FIELDS})
  return plan


def _earlier_sessions(rng, world: World, listener: SessionPlan):
  """(tracks, kinds, played fractions), each [H, E]: H earlier sessions of
  `listener`, each its own seeded playlist served in order (the service's
  non-adaptive player; L < E cycles), the listener reacting with `respond`
  under the listener model (`listeners.shuffle_logits`: the session's moods,
  fatigue carried from track to track) as in the studied session."""
  config = world.config
  num_events = config.num_events
  sessions_key, respond_key = jax.random.split(rng)
  keys = jax.random.split(sessions_key, config.history_sessions)
  earlier = jax.vmap(lambda key: _sample_session(key, world, listener))(keys)
  events = jnp.arange(num_events)
  tracks = earlier.playlist[:, events % earlier.playlist.shape[1]]          # [H, E]
  # The listener model's logits of the served tracks, fatigue carried along.
  logits = jax.vmap(lambda session, served: listeners.shuffle_logits(
      world, session, served)[0])(earlier, tracks)
  kind, fraction, _ = respond(respond_key, jax.nn.sigmoid(logits), config)
  return tracks, kind, fraction


def _sample_with_history(rng, world: World) -> SessionPlan:
  """A session (drawn from `rng` as without history) and its listener's
  `config.history_sessions` earlier sessions (from a key folded off `rng`)."""
  plan = _sample_session(rng, world)
  if world.config.history_sessions == 0:  # sample_sessions adds empty fields
    return plan
  tracks, kind, fraction = _earlier_sessions(jax.random.fold_in(rng, 1), world, plan)
  return plan.replace(history_track=tracks.astype(jnp.int32),
                      history_kind=kind.astype(jnp.int32),
                      history_fraction=fraction.astype(jnp.float32))


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _sample_batched(keys, world, batch_size):
  return lax.map(lambda key: _sample_with_history(key, world), keys, batch_size=batch_size)


def sample_sessions(rng, num_sessions: int, world: World, *,
                    batch_size: int = 256) -> SessionPlan:
  """Draws `num_sessions` sessions (listener, moods, playlist, noise) and what
  each listener did in `config.history_sessions` earlier sessions.

  Sessions are drawn `batch_size` at a time so seeding's [batch, N] cosines
  stay small. Session b is a function of (rng, b) only.
  """
  if world.config.history_sessions < 0:
    raise ValueError(f"history_sessions={world.config.history_sessions}: expected >= 0")
  keys = jax.random.split(rng, num_sessions)
  plan = _sample_batched(keys, world, min(batch_size, num_sessions))
  if world.config.history_sessions == 0:  # (lax.map cannot batch empty outputs)
    empty = jnp.zeros((num_sessions, 0, world.config.num_events), jnp.int32)
    plan = plan.replace(history_track=empty, history_kind=empty,
                        history_fraction=empty.astype(jnp.float32))
  return plan


# ------------------------------------------------------------------ choice model


def true_probabilities(world: World, plan: SessionPlan, event,
                       state: listeners.ListenerState | None = None):
  """[N] P(accept) of every library track for one session at `event` (the oracle).

  Under `config.listener_model` (`session/listeners.py`); `state` the listener's
  fatigue (`listeners.init_state`/`observe`; None: nothing served yet).
  O(N (K + r)) from the precomputed track tables, no [N, d] work.
  """
  return jax.nn.sigmoid(listeners.logits(world, plan, event, None, state))


def track_probabilities(world: World, plan: SessionPlan, event, tracks,
                        state: listeners.ListenerState | None = None):
  """P(accept) of library tracks `tracks` ([...] int) for one session at `event`
  (`state` as in `true_probabilities`)."""
  return jax.nn.sigmoid(listeners.logits(world, plan, event, tracks, state))


def respond(rng, p, config: SimConfig):
  """The listener's reaction to tracks accepted with probability p.

  Args:
    rng: key.
    p: [...] P(accept), e.g. `track_probabilities`.
    config: response settings.

  Returns:
    kind: [...] int32 LISTEN, LIKE (accepted), SKIP, DISLIKE or PARTIAL.
    played_fraction: [...] float32 in (0, 1]: 1 for a full play, (majority, 1)
      for a late skip, [0, skip_threshold) early, [skip_threshold, majority)
      PARTIAL.
    label: [...] float32 Y of the kind (examples.LABEL_OF_KIND).
  """
  p = jnp.asarray(p, jnp.float32)
  u = jax.random.uniform(rng, (6,) + p.shape)
  accepted = u[0] < p
  liked = accepted & (u[1] < config.like_probability)
  late = accepted & ~liked & (u[2] < config.late_skip_probability)
  early = ~accepted & (u[3] < config.early_skip_share)
  disliked = early & (u[4] < config.dislike_probability)
  threshold, majority = config.skip_threshold, config.majority
  fraction = jnp.where(
      accepted, jnp.where(late, majority + (1.0 - u[5]) * (1.0 - majority), 1.0),
      jnp.where(early, u[5] * threshold, threshold + u[5] * (majority - threshold)))
  kind = examples.play_kind(fraction, liked, disliked, skip_threshold=threshold,
                            majority=majority)
  return kind, fraction, jnp.asarray(examples.LABEL_OF_KIND, jnp.float32)[kind]


# ------------------------------------------------------------------ calibration


def reference_tracks(rng, plan: SessionPlan, num_tracks: int, reference: str = "playlist"):
  """[B, E] tracks a shuffle serves: the session's playlist in a random order
  ("playlist", cycling if L < E) or uniform library tracks ("library")."""
  num_sessions, num_events = plan.prototype.shape
  if reference == "playlist":
    length = plan.playlist.shape[1]
    order = jnp.argsort(jax.random.uniform(rng, (num_sessions, length)), axis=1)
    order = order[:, jnp.arange(num_events) % length]
    return jnp.take_along_axis(plan.playlist, order, axis=1)
  if reference == "library":
    return jax.random.randint(rng, (num_sessions, num_events), 0, num_tracks)
  raise ValueError(f"reference={reference!r}: expected one of {REFERENCES}")


@functools.partial(jax.jit, static_argnames=("reference", "with_best"))
def _served_logits(rng, world, plan, reference, with_best=False):
  """([B, E] logits of the tracks a shuffle serves, with_best [B, E] the largest
  logit over the library or None), without config.bias; the listener's
  fatigue is carried through each session (`listeners.shuffle_logits`)."""
  tracks = reference_tracks(rng, plan, world.library.num_tracks, reference)
  unbiased = world.replace(config=world.config.replace(bias=0.0))
  one_session = lambda args: listeners.shuffle_logits(unbiased, *args, with_best=with_best)
  if with_best:  # [N] per event: a few sessions at a time
    return lax.map(one_session, (plan, tracks), batch_size=16)
  return jax.vmap(lambda *args: one_session(args))(plan, tracks)


def calibrate(rng, world: World, *, num_sessions: int = 4096, reference: str = "playlist",
              early_skip_rate: float = 0.24, skip_before_end_rate: float = 0.475) -> SimConfig:
  """Fits config.bias and config.early_skip_share to shuffle skip rates.

  Under a shuffle (`reference_tracks`), with a the rate of late skips among
  accepted tracks ((1 - like_probability) * late_skip_probability), the
  expected rates are
    skip before the end = R + (1 - R) a,   early skip = R * early_skip_share,
  R = mean(1 - p) over sessions and events. R follows from the first target;
  the bias giving it is found by bisection (R decreases with the bias) on
  `num_sessions` sampled sessions; early_skip_share = early target / R.

  Returns:
    world.config with bias and early_skip_share replaced.
  """
  config = world.config
  late = (1.0 - config.like_probability) * config.late_skip_probability
  reject_rate = (skip_before_end_rate - late) / (1.0 - late)
  share = early_skip_rate / reject_rate if reject_rate > 0 else np.inf
  if not 0 < reject_rate < 1 or share > 1:
    raise ValueError(f"targets early={early_skip_rate}, before end={skip_before_end_rate} "
                     f"cannot be met with late_skip_probability={config.late_skip_probability}")
  plan_key, order_key = jax.random.split(rng)
  plan = sample_sessions(plan_key, num_sessions, world)
  bias = _bisect_bias(_served_logits(order_key, world, plan, reference)[0], reject_rate)
  return config.replace(bias=float(bias), early_skip_share=float(share))


@jax.jit
def _bisect_bias(logits, reject_rate):
  """The bias b with mean(sigmoid(-(logits + b))) = reject_rate."""
  def bisect(_, bounds):
    low, high = bounds
    middle = 0.5 * (low + high)
    too_many_skips = jnp.mean(jax.nn.sigmoid(-(logits + middle))) > reject_rate
    return jnp.where(too_many_skips, middle, low), jnp.where(too_many_skips, high, middle)
  low, high = lax.fori_loop(0, 60, bisect, (jnp.float32(-50.0), jnp.float32(50.0)))
  return 0.5 * (low + high)


@functools.partial(jax.jit, static_argnames=("reference", "with_oracle"))
def _shuffle_outcomes(rng, world, plan, reference, with_oracle):
  order_key, respond_key = jax.random.split(rng)
  served, best = _served_logits(order_key, world, plan, reference, with_oracle)
  p = jax.nn.sigmoid(served + world.config.bias)
  kind, fraction, _ = respond(respond_key, p, world.config)
  rates = {"early_skip": fraction < world.config.skip_threshold,
           "skip_before_end": fraction < 1.0, "partial": kind == PARTIAL,
           "listen": (kind == LISTEN) | (kind == LIKE), "like": kind == LIKE,
           "dislike": kind == DISLIKE, "mean_p": p}
  if with_oracle:  # the best library track at each event
    rates["oracle_p"] = jax.nn.sigmoid(best + world.config.bias)
  return {name: jnp.mean(x.astype(jnp.float32)) for name, x in rates.items()}


def shuffle_rates(rng, world: World, *, num_sessions: int = 4096, reference: str = "playlist",
                  with_oracle: bool = True) -> dict[str, float]:
  """Rates of each outcome when a shuffle is served, simulated with `respond`.

  Returns early_skip (played < skip_threshold), skip_before_end (played < 1),
  partial, listen (LISTEN or LIKE), like, dislike, mean_p, and with_oracle
  oracle_p: the mean P(accept) of the best library track at each event.
  """
  plan_key, outcome_key = jax.random.split(rng)
  plan = sample_sessions(plan_key, num_sessions, world)
  rates = _shuffle_outcomes(outcome_key, world, plan, reference, with_oracle)
  return {name: float(value) for name, value in rates.items()}
