"""Listener models (`jplaylist.session.listeners`) against numpy references.

Each model's probabilities against its formula computed in numpy on a tiny
library; the "attributes" listener is blind to the embeddings; the "mixture"
taste is the best of the bag; fatigue lowers acceptance after repeats and the
study carries it; calibration of each model meets the shuffle skip rates.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import preprocessing as sk_preprocessing

from jplaylist.session import listeners
from jplaylist.session import simulator as sim
from jplaylist.session import study

NUM_EVENTS = 12
BASE = dict(num_events=NUM_EVENTS, playlist_length=20, bag_size=3, active_per_session=2,
            switch_probability=0.2, num_prototypes=6, history_sessions=0)


@pytest.fixture(scope="module")
def library():
  return sim.synthetic_library(jax.random.key(0), 400, 16, num_clusters=4, num_moods=3)


@pytest.fixture(scope="module")
def prototypes(library):
  return sim.make_prototypes(jax.random.key(1), library, 6)


def _world(library, prototypes, **overrides):
  return sim.make_world(jax.random.key(2), library, prototypes,
                        sim.SimConfig(**{**BASE, **overrides}))


@pytest.fixture(scope="module")
def plan(library, prototypes):
  # Without earlier sessions a plan does not depend on the listener model.
  return sim.sample_sessions(jax.random.key(3), 4, _world(library, prototypes))


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _numpy_one_hot(library, names):
  """[N, F] and the (name, value) labels, "" = unknown, values sorted."""
  columns, labels = [], []
  for name in names:
    values = np.asarray(library.attributes[name])
    for value in np.unique(values[values != ""]):
      columns.append((values == value).astype(np.float64))
      labels.append((name, str(value)))
  return np.stack(columns, 1), labels


def _numpy_fatigue(groups, served, decay):
  """[N] mean over a track's groups of sum_s decay^(t-1-s) [served_s shares it].

  groups: per track, the list of its group ids."""
  count = {}
  for track in served:
    count = {g: decay * c for g, c in count.items()}
    for g in groups[track]:
      count[g] = count.get(g, 0.0) + 1.0
  return np.array([np.mean([count.get(g, 0.0) for g in gs]) if gs else 0.0 for gs in groups])


def _state_after(world, served):
  state = listeners.init_state(world)
  for track in served:
    state = listeners.observe(world, state, int(track))
  return state


# ------------------------------------------------------------------ attribute codes


def test_attribute_one_hot_matches_sklearn(library):
  genre = np.array(library.attributes["genre"], dtype=object)
  genre[::7] = ""  # unknown values
  info = sim.LibraryInfo(ids=library.info.ids,
                         attributes={"genre": genre.astype(str),
                                     "mood": library.attributes["mood"]})
  patched = library.replace(info=info)
  one_hot, labels = sim.attribute_one_hot(patched, ("genre", "mood"))
  columns = np.stack([info.attributes["genre"], info.attributes["mood"]], 1)
  encoder = sk_preprocessing.OneHotEncoder(sparse_output=False).fit(columns)
  expected = encoder.transform(columns)
  names = [("genre", str(v)) for v in encoder.categories_[0]] + [
      ("mood", str(v)) for v in encoder.categories_[1]]
  keep = [i for i, (_, value) in enumerate(names) if value != ""]
  assert list(labels) == [names[i] for i in keep]
  np.testing.assert_array_equal(one_hot, expected[:, keep])
  assert np.all(one_hot[::7, :4] == 0) and np.all(one_hot.sum(1) >= 1)
  with pytest.raises(ValueError, match="tempo_class"):
    sim.attribute_one_hot(patched, ("genre", "tempo_class"))


# ------------------------------------------------------------------ models against numpy


def test_embedding_listener_with_popularity_and_fatigue_matches_numpy(library, prototypes,
                                                                        plan):
  world = _world(library, prototypes, popularity_weight=0.4, fatigue_weight=0.6,
                 fatigue_decay=0.7)
  config = world.config
  embeddings = np.asarray(library.embeddings, np.float64)
  centres = np.asarray(prototypes.centres, np.float64)
  noise = embeddings @ np.asarray(world.basis, np.float64)[6:].T
  log_popularity = np.log(np.asarray(library.popularity, np.float64))
  z = (log_popularity - log_popularity.mean()) / log_popularity.std()
  nearest = [[g] for g in np.argmax(embeddings @ centres.T, 1)]
  session = plan.session(1)
  served = np.asarray(session.playlist[:6])
  state = _state_after(world, served)
  event = 7
  k = int(session.prototype[event])
  logit = (config.slope * embeddings @ centres[k]
           + config.taste_weight * embeddings @ np.asarray(session.taste, np.float64)
           + config.taste_noise * noise @ np.asarray(session.noise_weights, np.float64)
           + 0.4 * z - 0.6 * _numpy_fatigue(nearest, served, 0.7)
           + config.bias + float(session.bias_offset))
  np.testing.assert_allclose(np.asarray(sim.true_probabilities(world, session, event, state)),
                             _sigmoid(logit), atol=2e-5)
  tracks = jnp.asarray([3, 50, int(served[0])])
  np.testing.assert_allclose(
      np.asarray(sim.track_probabilities(world, session, event, tracks, state)),
      _sigmoid(logit[np.asarray(tracks)]), atol=2e-5)


def test_attributes_listener_matches_numpy(library, prototypes, plan):
  world = _world(library, prototypes, listener_model="attributes", taste_noise=0.0,
                 fatigue_weight=0.5)
  config = world.config
  names = ["mood", "genre"]  # NAME_ATTRIBUTES order
  one_hot, labels = _numpy_one_hot(library, names)
  assert list(world.listener.attribute_labels) == labels
  # Each prototype weighs the values that name it equally.
  weights = np.zeros((6, len(labels)))
  for k, description in enumerate(prototypes.descriptions):
    for pair in description:
      weights[k, labels.index(pair)] = 1.0 / len(description)
  groups = [[labels.index((n, library.attributes[n][i])) for n in names]
            for i in range(library.num_tracks)]
  for b in (0, 2):
    session = plan.session(b)
    served = np.asarray(session.playlist[:5])
    state = _state_after(world, served)
    bag_weights = np.asarray(session.bag_weights, np.float64)
    taste = (bag_weights / bag_weights.sum()) @ weights[np.asarray(session.bag)]
    for event in (0, NUM_EVENTS - 1):
      logit = (config.slope * one_hot @ weights[int(session.prototype[event])]
               + config.taste_weight * one_hot @ taste
               - 0.5 * _numpy_fatigue(groups, served, config.fatigue_decay)
               + config.bias + float(session.bias_offset))
      np.testing.assert_allclose(
          np.asarray(sim.true_probabilities(world, session, event, state)),
          _sigmoid(logit), atol=2e-5)
  # The listener's own deviation: a function of the attribute code alone, of
  # unit mean square over the library for a N(0, I) listener.
  noise = np.asarray(world.listener.noise, np.float64)
  solution, *_ = np.linalg.lstsq(one_hot, noise, rcond=None)
  np.testing.assert_allclose(one_hot @ solution, noise, atol=1e-5)
  g = np.random.default_rng(0).normal(size=(noise.shape[1], 2000))
  assert abs(np.mean((noise @ g) ** 2) - 1.0) < 0.1


def test_attributes_listener_never_reads_the_embeddings(library, prototypes, plan):
  rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(16, 16)))
  rotated = library.replace(embeddings=library.embeddings @ jnp.asarray(rotation, jnp.float32))
  session = plan.session(0)
  difference = {}
  for model in ("attributes", "embedding"):
    original = _world(library, prototypes, listener_model=model, fatigue_weight=0.3)
    blind = _world(rotated, prototypes, listener_model=model, fatigue_weight=0.3)
    served = np.asarray(session.playlist[:4])
    p = [np.asarray(sim.true_probabilities(w, session, 5, _state_after(w, served)))
         for w in (original, blind)]
    difference[model] = np.max(np.abs(p[0] - p[1]))
  assert difference["attributes"] < 1e-6, difference
  assert difference["embedding"] > 0.05, difference  # the check can fail


def test_mixture_taste_is_the_best_of_the_bag(library, prototypes, plan):
  embeddings = np.asarray(library.embeddings, np.float64)
  centres = np.asarray(prototypes.centres, np.float64)
  session = plan.session(3)
  bag = np.asarray(session.bag)
  share = np.asarray(session.bag_weights, np.float64)
  share = share / share.sum()
  bag_cosines = embeddings @ centres[bag].T  # [N, M]
  for sharpness in (0.0, 5.0):
    world = _world(library, prototypes, listener_model="mixture",
                   mixture_sharpness=sharpness)
    config = world.config
    noise = embeddings @ np.asarray(world.basis, np.float64)[6:].T
    if sharpness == 0:
      taste = bag_cosines.max(1)
    else:
      taste = np.log(np.exp(sharpness * bag_cosines) @ share) / sharpness
    event = 4
    logit = (config.slope * embeddings @ centres[int(session.prototype[event])]
             + config.taste_weight * taste
             + config.taste_noise * noise @ np.asarray(session.noise_weights, np.float64)
             + config.bias + float(session.bias_offset))
    np.testing.assert_allclose(np.asarray(sim.true_probabilities(world, session, event)),
                               _sigmoid(logit), atol=2e-5)
  # Not the embedding listener's average.
  linear = _world(library, prototypes)
  assert np.max(np.abs(np.asarray(sim.true_probabilities(linear, session, 4))
                       - np.asarray(sim.true_probabilities(world, session, 4)))) > 0.05


# ------------------------------------------------------------------ fatigue


@pytest.mark.parametrize("model", ["embedding", "attributes"])
def test_fatigue_lowers_acceptance_after_repeats(library, prototypes, plan, model):
  world = _world(library, prototypes, listener_model=model, fatigue_weight=0.5)
  session = plan.session(0)
  index = np.asarray(world.listener.group_index)
  same = np.flatnonzero((index == index[0]).all(1))  # tracks of track 0's groups
  other = np.flatnonzero(~np.isin(index, index[0]).any(1))
  assert len(same) > 5 and len(other) > 0
  probe, repeats, unrelated = same[0], same[1:5], other[0]
  state = listeners.init_state(world)
  p = lambda state: np.asarray(sim.track_probabilities(
      world, session, 2, jnp.asarray([probe, unrelated]), state))
  history = [p(state)]
  for track in repeats:
    state = listeners.observe(world, state, int(track))
    history.append(p(state))
  history = np.array(history)
  assert np.all(np.diff(history[:, 0]) < 0), history  # each repeat lowers it
  np.testing.assert_allclose(history[:, 1], history[0, 1], rtol=1e-6)  # others unchanged
  # Without fatigue the state has no effect.
  calm = world.replace(config=world.config.replace(fatigue_weight=0.0))
  np.testing.assert_allclose(np.asarray(sim.track_probabilities(
      calm, session, 2, jnp.asarray([probe]), state)), history[0, :1], rtol=1e-6)


def test_study_carries_the_listeners_fatigue(library, prototypes, plan):
  world = _world(library, prototypes, fatigue_weight=0.8, popularity_weight=0.3)
  spec = study.StudySpec(strategies=("initial",), ranking_metrics=False, sessions_per_chunk=4)
  results = study.run(world, plan, spec, jax.random.key(4), log=lambda _: None)
  tracks, served_prob = results["track"][0], results["served_prob"][0]
  for b in (0, 3):
    session = plan.session(b)
    state = listeners.init_state(world)
    expected = []
    for event in range(NUM_EVENTS):
      expected.append(float(sim.track_probabilities(world, session, event,
                                                    int(tracks[b, event]), state)))
      state = listeners.observe(world, state, int(tracks[b, event]))
    np.testing.assert_allclose(served_prob[b], expected, atol=1e-5)
  # The fatigue-free probabilities differ: the carry matters.
  fresh = [float(sim.track_probabilities(world, plan.session(0), t, int(tracks[0, t])))
           for t in range(NUM_EVENTS)]
  assert np.max(np.abs(np.array(fresh) - served_prob[0])) > 0.01


# ------------------------------------------------------------------ calibration and errors


@pytest.mark.parametrize("overrides", [
    dict(listener_model="embedding"), dict(listener_model="attributes"),
    dict(listener_model="mixture", popularity_weight=0.3, fatigue_weight=0.3)])
def test_calibration_hits_the_shuffle_skip_rates(library, prototypes, overrides):
  world = _world(library, prototypes, **overrides)
  world = world.replace(config=sim.calibrate(jax.random.key(5), world, num_sessions=1024))
  rates = sim.shuffle_rates(jax.random.key(6), world, num_sessions=1024)
  assert abs(rates["early_skip"] - 0.24) < 0.03, rates
  assert abs(rates["skip_before_end"] - 0.475) < 0.03, rates
  assert rates["oracle_p"] > rates["mean_p"] + 0.1, rates


def test_bad_listener_settings_are_rejected(library, prototypes, plan):
  with pytest.raises(ValueError, match="listener_model='embeddings'"):
    _world(library, prototypes, listener_model="embeddings")
  with pytest.raises(ValueError, match="fatigue_decay=1.0"):
    _world(library, prototypes, fatigue_decay=1.0)
  with pytest.raises(ValueError, match="mixture_sharpness=-1.0"):
    _world(library, prototypes, listener_model="mixture", mixture_sharpness=-1.0)
  with pytest.raises(ValueError, match="instrument_families"):
    _world(library, prototypes, listener_model="attributes",
           listener_attributes=("instrument_families",))
  with pytest.raises(ValueError, match="not linear"):
    sim.choice_state(_world(library, prototypes, listener_model="mixture"), plan.session(0), 0)
