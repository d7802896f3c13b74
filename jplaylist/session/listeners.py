"""Listener models of the session simulator: how much a listener wants a track.

The study's learners rank tracks by their audio embeddings. A listener whose
preferences are linear in that very embedding (model "embedding") is the
easiest listener a linear learner can meet, so the simulator offers others
(issue 17, deliverable 2), chosen by `SimConfig.listener_model`:

  "embedding"   logit = slope * cos(e_n, c_k) + taste_weight * cos(e_n, taste)
                        + taste_noise * e_n . g
                (c_k the current mood's prototype centre, taste the bag's
                weighted mean centre, g the listener's own direction).
  "attributes"  the same shape over ground-truth attributes, never over the
                embedding: a mood is a weight over attribute values (those
                naming its prototype, "sad jazz": 1/2 on mood=sad and 1/2 on
                genre=jazz), the long-term taste is the bag-weighted mean of
                the bag's mood weights, and the listener's own deviation is a
                random linear function of the attribute one-hot code. On the
                demo library: instrument family, style, tempo class and mood.
  "mixture"     "embedding" with a non-linear taste: the best of the bag's
                prototypes, max_m cos(e_n, c_m), not their average (or, with
                mixture_sharpness s > 0, (1/s) log sum_m w_m exp(s cos(e_n, c_m))
                with the bag weights w normalised to sum 1).

Effects added to any model (0 by default, so "embedding" is today's listener):
  + popularity_weight * z_n, z the library's standardised log popularity
    (familiar, popular tracks are accepted more readily);
  - fatigue_weight * mean_h count[group_h(n)]: fatigue from repetition. The
    listener state (`ListenerState`) holds a decaying count per group of the
    tracks served so far in the session, count <- fatigue_decay * count +
    [groups of the served track]; a track's groups are its nearest prototype
    ("embedding", "mixture") or its attribute values ("attributes", read as the
    mean over its attributes). Every served track counts, skipped or not, so
    the state depends only on what was served (the calibration stays a
    bisection on the bias).

Cost. `make_tables` precomputes per-track tables: mood fit [N, K], noise
features [N, r], popularity [N] and fatigue groups [N, H]. `session_tables`
folds the session's constant terms into one [C] vector, so an event costs
O(C * H) on top of one [C] gather of the mood column: no [N, d] work.
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jplaylist.session.library import Library, attribute_one_hot
from jplaylist.session.prototypes import NAME_ATTRIBUTES, Prototypes

LISTENER_MODELS = ("embedding", "attributes", "mixture")


@flax.struct.dataclass
class ListenerTables:
  """Per-track tables of a world's listener model (`make_tables`).

  Attributes:
    mood: [N, K] float32 how well track n fits mood k: cos(e_n, c_k)
      ("embedding", "mixture") or the share of prototype k's attribute values
      track n has ("attributes").
    noise: [N, r] float32 features of the listener's own deviation, scaled so
      that noise @ g has unit mean square over the library for g ~ N(0, I_r).
    popularity: [N] float32 standardised log popularity.
    group_index: [N, H] int32 fatigue groups of each track (0 where unknown).
    group_valid: [N, H] bool the group is known.
    attribute_weights: [K, F] float32 each mood's weights over attribute
      values ("attributes"; [K, 0] otherwise).
    num_groups: G, the length of `ListenerState.count`.
    attribute_labels: F (attribute, value) pairs of the columns ("attributes").
  """
  mood: jax.Array
  noise: jax.Array
  popularity: jax.Array
  group_index: jax.Array
  group_valid: jax.Array
  attribute_weights: jax.Array
  num_groups: int = flax.struct.field(pytree_node=False)
  attribute_labels: tuple[tuple[str, str], ...] = flax.struct.field(pytree_node=False)


@flax.struct.dataclass
class ListenerState:
  """What the listener carries through a session: count [G] float32, the
  decaying number of recently served tracks in each fatigue group."""
  count: jax.Array


def check_config(config) -> None:
  """Raises ValueError naming a bad listener setting of a SimConfig."""
  if config.listener_model not in LISTENER_MODELS:
    raise ValueError(f"listener_model={config.listener_model!r}: expected one of "
                     f"{LISTENER_MODELS}")
  if not 0.0 <= float(config.fatigue_decay) < 1.0:
    raise ValueError(f"fatigue_decay={config.fatigue_decay}: expected a value in [0, 1)")
  if not float(config.mixture_sharpness) >= 0.0:
    raise ValueError(f"mixture_sharpness={config.mixture_sharpness}: expected >= 0 "
                     "(0: the hard max over the bag)")
  for name in ("popularity_weight", "fatigue_weight"):
    if not np.isfinite(float(getattr(config, name))):
      raise ValueError(f"{name}={getattr(config, name)}: expected a finite number")


def listener_attributes(library: Library, prototypes: Prototypes,
                        names: Sequence[str] = ()) -> list[str]:
  """Attributes an "attributes" listener has preferences over.

  `names` if given; else the attributes of NAME_ATTRIBUTES the library has
  (mood, tempo class, style, genre, instrument family), then any other
  attribute that names a prototype.
  """
  if names:
    return list(names)
  chosen = [n for n in NAME_ATTRIBUTES if n in library.attributes]
  for description in prototypes.descriptions:
    chosen += [n for n, _ in description if n not in chosen and n in library.attributes]
  if not chosen:
    raise ValueError("listener_model='attributes': the library has no attributes (it has "
                     f"{sorted(library.attributes)}) and the prototypes name none")
  return chosen


def mood_attribute_weights(prototypes: Prototypes,
                           labels: Sequence[tuple[str, str]]) -> np.ndarray:
  """[K, F]: prototype k weighs each (attribute, value) of its description 1/|description|.

  A prototype whose description names no listener attribute (an unnamed
  k-means cluster) has no mood preference: a zero row.
  """
  column = {label: f for f, label in enumerate(labels)}
  weights = np.zeros((prototypes.num_prototypes, len(labels)), np.float32)
  for k, description in enumerate(prototypes.descriptions):
    known = [column[pair] for pair in description if pair in column]
    if known:
      weights[k, known] = 1.0 / len(known)
  return weights


def _noise_features(rng, values, rank):
  """values [N, p] -> values @ G scaled: unit RMS per column over the library, / sqrt(r)."""
  gaussian = jax.random.normal(rng, (values.shape[1], rank))
  projected = values @ gaussian
  rms = jnp.sqrt(jnp.mean(projected**2, axis=0))
  return projected / jnp.maximum(rms, 1e-12) / np.sqrt(rank)


def standardized_log_popularity(popularity) -> jax.Array:
  """[N] (log p - mean) / std over the library (zero shares count as the smallest)."""
  popularity = np.asarray(popularity, np.float64)
  positive = popularity[popularity > 0]
  floor = positive.min() if positive.size else 1.0
  log_popularity = np.log(np.maximum(popularity, floor))
  spread = log_popularity.std()
  return jnp.asarray((log_popularity - log_popularity.mean()) / (spread if spread > 0 else 1.0),
                     jnp.float32)


def make_tables(rng, library: Library, prototypes: Prototypes, config,
                features) -> ListenerTables:
  """The per-track tables of `config.listener_model`.

  Args:
    rng: key for the "attributes" listener's noise features.
    library, prototypes: the world's.
    config: a SimConfig (listener_model, listener_attributes, noise_rank).
    features: [N, K + r] the world's embedding features (cosines, then noise).
  """
  check_config(config)
  num_prototypes = prototypes.num_prototypes
  popularity = standardized_log_popularity(library.popularity)
  if config.listener_model == "attributes":
    names = listener_attributes(library, prototypes, config.listener_attributes)
    one_hot, labels = attribute_one_hot(library, names)
    weights = mood_attribute_weights(prototypes, labels)
    mood = jnp.asarray(one_hot @ weights.T)
    noise = _noise_features(rng, jnp.asarray(one_hot), config.noise_rank)
    # One fatigue group per attribute value.
    column = {label: f for f, label in enumerate(labels)}
    index = np.zeros((library.num_tracks, len(names)), np.int32)
    valid = np.zeros((library.num_tracks, len(names)), bool)
    for h, name in enumerate(names):
      values = library.attributes[name]
      valid[:, h] = values != ""
      index[valid[:, h], h] = [column[(name, v)] for v in values[valid[:, h]]]
    return ListenerTables(mood=mood.astype(jnp.float32), noise=noise.astype(jnp.float32),
                          popularity=popularity, group_index=jnp.asarray(index),
                          group_valid=jnp.asarray(valid),
                          attribute_weights=jnp.asarray(weights), num_groups=len(labels),
                          attribute_labels=tuple(labels))
  mood = features[:, :num_prototypes]
  nearest = jnp.argmax(mood, axis=1).astype(jnp.int32)[:, None]
  return ListenerTables(mood=mood, noise=features[:, num_prototypes:], popularity=popularity,
                        group_index=nearest, group_valid=jnp.ones_like(nearest, bool),
                        attribute_weights=jnp.zeros((num_prototypes, 0), jnp.float32),
                        num_groups=num_prototypes, attribute_labels=())


# ------------------------------------------------------------------ linear "embedding" listener


@flax.struct.dataclass
class ChoiceState:
  """One session at one event: logit(e) = e @ direction + bias.

  Attributes:
    direction: [d] float32 = coefficients @ world.basis.
    coefficients: [K + r] float32 weights of world.features.
    bias: [] float32 config.bias + the session's offset.
  """
  direction: jax.Array
  coefficients: jax.Array
  bias: jax.Array


def choice_state(world, plan, event) -> ChoiceState:
  """The "embedding" listener of one session (`plan.session(b)`) at `event` (may
  be traced) as a direction in the embedding space. Without the popularity and
  fatigue terms: `logits` (simulator.true_probabilities, track_probabilities) has them."""
  config = world.config
  if config.listener_model != "embedding":
    raise ValueError(f"choice_state: listener_model={config.listener_model!r} is not linear "
                     "in the embedding; use true_probabilities / track_probabilities")
  mood = jax.nn.one_hot(plan.prototype[event], world.num_prototypes)
  taste = jnp.zeros(world.num_prototypes).at[plan.bag].add(plan.bag_weights)
  coefficients = jnp.concatenate([config.slope * mood + config.taste_weight * taste,
                                  config.taste_noise * plan.noise_weights])
  return ChoiceState(direction=coefficients @ world.basis, coefficients=coefficients,
                     bias=config.bias + plan.bias_offset)


def listen_probability(track_embeddings, state: ChoiceState):
  """P(accept) of any tracks: [..., d] embeddings -> [...] (O(d) per track)."""
  return jax.nn.sigmoid(track_embeddings @ state.direction + state.bias)



# ------------------------------------------------------------------ per session


@flax.struct.dataclass
class SessionTables:
  """One session's listener over C tracks (`session_tables`).

  Attributes:
    base: [C] float32 the logit terms constant over the session: taste,
      own deviation, popularity, config.bias and the session's offset.
    mood: [C, K] float32 rows of `ListenerTables.mood`.
    group_index: [C, H] int32; group_weight: [C, H] float32 (1 / the number of
      known groups of the track, 0 where unknown).
  """
  base: jax.Array
  mood: jax.Array
  group_index: jax.Array
  group_weight: jax.Array


def _taste(config, bag_mood, bag_weights):
  """[..., M] fits to the bag's moods -> [...] the long-term taste term."""
  if config.listener_model == "embedding":  # = cos(e, taste): bag_weights = w / |sum w c|
    return bag_mood @ bag_weights
  share = bag_weights / jnp.sum(bag_weights)
  if config.listener_model == "attributes":
    return bag_mood @ share
  sharpness = config.mixture_sharpness  # "mixture": the best of the bag
  safe = jnp.where(sharpness > 0, sharpness, 1.0)
  soft = jax.nn.logsumexp(safe * bag_mood + jnp.log(share), axis=-1) / safe
  return jnp.where(sharpness > 0, soft, jnp.max(bag_mood, axis=-1))


def session_tables(world, plan, tracks=None) -> SessionTables:
  """The listener of one session (`plan.session(b)`) over `tracks` ([...] int;
  None: the whole library, without a gather)."""
  config, tables = world.config, world.listener
  rows = (lambda x: x) if tracks is None else (lambda x: x[tracks])
  mood = rows(tables.mood)
  valid = rows(tables.group_valid).astype(jnp.float32)
  base = (config.taste_weight * _taste(config, mood[..., plan.bag], plan.bag_weights)
          + config.taste_noise * (rows(tables.noise) @ plan.noise_weights)
          + config.popularity_weight * rows(tables.popularity)
          + (config.bias + plan.bias_offset))
  return SessionTables(base=base, mood=mood, group_index=rows(tables.group_index),
                       group_weight=valid / jnp.maximum(jnp.sum(valid, -1, keepdims=True), 1.0))


def init_state(world) -> ListenerState:
  """A listener at the start of a session: nothing heard."""
  return ListenerState(count=jnp.zeros((world.listener.num_groups,), jnp.float32))


def observe(world, state: ListenerState, track) -> ListenerState:
  """The state after library track `track` (a scalar int) was served."""
  tables = world.listener
  heard = jnp.zeros_like(state.count).at[tables.group_index[track]].add(
      tables.group_valid[track].astype(jnp.float32))
  return ListenerState(count=world.config.fatigue_decay * state.count + heard)


def fatigue(session: SessionTables, state: ListenerState):
  """[C] mean over each track's groups of the decaying count of served tracks."""
  return jnp.sum(state.count[session.group_index] * session.group_weight, axis=-1)


def event_logits(world, session: SessionTables, plan, event, state: ListenerState | None = None):
  """[C] logits of P(accept) at `event` (may be traced), given the listener state."""
  config = world.config
  logits = session.base + config.slope * session.mood[..., plan.prototype[event]]
  if state is not None:
    logits = logits - config.fatigue_weight * fatigue(session, state)
  return logits


def logits(world, plan, event, tracks=None, state: ListenerState | None = None):
  """Logits of P(accept) of `tracks` ([...] int; None: every library track) for
  one session at `event`; state None: nothing heard yet (no fatigue)."""
  return event_logits(world, session_tables(world, plan, tracks), plan, event, state)


def shuffle_logits(world, plan, served, *, with_best: bool = False):
  """One session served `served` ([E] library tracks) in order.

  Returns ([E] logits of the served tracks, [E] the largest logit over the
  library at each event or None), the listener's fatigue carried along.
  """
  served_tables = session_tables(world, plan, served)
  library_tables = session_tables(world, plan) if with_best else None

  def step(state, event):
    row = jax.tree.map(lambda x: x[event], served_tables)
    logit = event_logits(world, row, plan, event, state)
    best = (jnp.max(event_logits(world, library_tables, plan, event, state)) if with_best
            else jnp.float32(0.0))
    return observe(world, state, served[event]), (logit, best)

  _, (served_logits, best) = lax.scan(step, init_state(world), jnp.arange(served.shape[0]))
  return served_logits, (best if with_best else None)
