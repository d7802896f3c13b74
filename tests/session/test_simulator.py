"""The session simulator against independent references.

k-means against scikit-learn; the choice model against its formula in numpy;
outcome frequencies against the probabilities that drew them; session plans
against the configured switch and text-request rates; the calibration against
the Spotify skip rates it targets, measured by simulating responses.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import cluster as sk_cluster
from sklearn import datasets as sk_datasets

from jplaylist import library_index
from jplaylist.session import examples
from jplaylist.session import simulator as sim

NUM_TRACKS = 3000
DIM = 32
NUM_PROTOTYPES = 16
NUM_SESSIONS = 2048  # one size everywhere: sampling compiles once


def _binomial_tolerance(p, n, sigmas=5.0):
  return sigmas * np.sqrt(p * (1 - p) / n) + 1e-4


@pytest.fixture(scope="module")
def library():
  return sim.synthetic_library(jax.random.key(0), NUM_TRACKS, DIM, num_clusters=8)


@pytest.fixture(scope="module")
def prototypes(library):
  return sim.make_prototypes(jax.random.key(1), library, NUM_PROTOTYPES)


@pytest.fixture(scope="module")
def world(library, prototypes):
  config = sim.SimConfig(num_events=30, playlist_length=40, switch_probability=0.1,
                         text_probability=0.3)
  return sim.make_world(jax.random.key(2), library, prototypes, config)


# ------------------------------------------------------------------ k-means and prototypes


def test_kmeans_matches_sklearn_inertia():
  points, _ = sk_datasets.make_blobs(n_samples=2000, n_features=16, centers=10,
                                     cluster_std=3.0, random_state=0)
  points = points.astype(np.float32)
  reference = sk_cluster.KMeans(n_clusters=10, n_init=10, random_state=0).fit(points)
  result = sim.kmeans(jax.random.key(0), jnp.asarray(points), 10)
  centres = np.asarray(result.centres, np.float64)
  distances = ((points[:, None, :] - centres[None]) ** 2).sum(-1)
  inertia = distances.min(1).sum()
  assert inertia <= 1.01 * reference.inertia_
  np.testing.assert_allclose(float(result.inertia), inertia, rtol=1e-3)
  np.testing.assert_array_equal(np.asarray(result.assignment), distances.argmin(1))
  # Converged: every centre is the mean of its members.
  for k in range(10):
    np.testing.assert_allclose(centres[k], points[distances.argmin(1) == k].mean(0), atol=1e-3)
  again = sim.kmeans(jax.random.key(0), jnp.asarray(points), 10)
  np.testing.assert_array_equal(np.asarray(again.centres), np.asarray(result.centres))


def test_attribute_prototypes_are_mean_directions(library):
  protos = sim.make_prototypes(jax.random.key(0), library, 12, method="attributes",
                               attribute_names=("mood", "genre"), min_tracks=5)
  embeddings = np.asarray(library.embeddings, np.float64)
  counts = []
  for k, description in enumerate(protos.descriptions):
    (mood_key, mood), (genre_key, genre) = description
    assert (mood_key, genre_key) == ("mood", "genre")
    assert protos.names[k] == f"{mood} {genre}"
    members = (library.attributes["mood"] == mood) & (library.attributes["genre"] == genre)
    counts.append(members.sum())
    mean = embeddings[members].mean(0)
    np.testing.assert_allclose(np.asarray(protos.centres[k]), mean / np.linalg.norm(mean),
                               atol=1e-5)
  # The 12 most frequent combinations, most frequent first.
  all_counts = sorted(
      (np.sum((library.attributes["mood"] == m) & (library.attributes["genre"] == g))
       for m in set(library.attributes["mood"]) for g in set(library.attributes["genre"])),
      reverse=True)
  assert counts == all_counts[:12]
  assert sim.request_texts(protos)[0] == f"switch to {protos.names[0]}"
  np.testing.assert_allclose(np.linalg.norm(np.asarray(protos.text), axis=1), 1.0, atol=1e-5)


def test_kmeans_prototypes_are_named_by_majority_attributes(library, prototypes):
  centres = np.asarray(prototypes.centres)
  np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1.0, atol=1e-5)
  kmeans_key, _ = jax.random.split(jax.random.key(1))  # as make_prototypes splits it
  result = sim.kmeans(kmeans_key, library.embeddings, NUM_PROTOTYPES)
  assignment = np.asarray(result.assignment)
  for k, name in enumerate(prototypes.names):
    genres = library.attributes["genre"][assignment == k]
    values, counts = np.unique(genres, return_counts=True)
    if counts.max() >= 0.5 * len(genres):
      assert values[counts.argmax()] in name
    else:
      assert not any(g in name.split() for g in values)


def test_with_text_embeddings_uses_the_callable(prototypes):
  seen = []

  def embed_text(texts):
    seen.extend(texts)
    rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=DIM) * 3 for t in texts]
    return np.stack(rows)

  updated = sim.with_text_embeddings(prototypes, embed_text, template="play {} now")
  assert seen == [f"play {name} now" for name in prototypes.names]
  text = np.asarray(updated.text)
  np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
  for i, j in [(i, j) for i in range(len(seen)) for j in range(i) if seen[i] == seen[j]]:
    np.testing.assert_allclose(text[i], text[j])
  with pytest.raises(ValueError, match="embed_text returned"):
    sim.with_text_embeddings(prototypes, lambda texts: np.zeros((len(texts), DIM + 1)))


# ------------------------------------------------------------------ library index


def test_library_from_index(tmp_path):
  rng = np.random.default_rng(0)
  attributes = [
      {"style": "Baroque", "mood": "sad", "instrument_families": ["bowed strings", "keyboard"],
       "sacred": True, "duration_s": 30.0, "title": "a"},
      {"style": "Baroque", "mood": "calm", "instrument_families": ["woodwind"],
       "sacred": False, "duration_s": 12.5, "title": "b"},
      {"style": "Celtic", "mood": "sad", "instrument_families": [], "title": "c"},
      {},
      {"style": "Celtic", "mood": "sad", "instrument_families": ["bowed strings"],
       "title": "d"},
      {"style": "Baroque", "mood": "sad", "title": "e"},
  ]
  index = library_index.LibraryIndex(
      ids=[f"rec-{i}" for i in range(6)], embeddings=2.0 * rng.normal(size=(6, 8)),
      attributes=attributes, meta={"source": "hand-made"})
  index = library_index.load(index.save(str(tmp_path / "library")))
  library = sim.library_from_index(index, max_values=4)
  assert library.info.ids == tuple(f"rec-{i}" for i in range(6))
  np.testing.assert_allclose(np.linalg.norm(np.asarray(library.embeddings), axis=1), 1.0,
                             atol=1e-6)
  # Strings and lists of strings are kept (lists by their first item), missing
  # values are "", booleans are not categorical, 5 titles exceed max_values.
  assert sorted(library.attributes) == ["instrument_families", "mood", "style"]
  assert library.attributes["instrument_families"].tolist() == [
      "bowed strings", "woodwind", "", "", "bowed strings", ""]
  assert library.attributes["style"].tolist() == [
      "Baroque", "Baroque", "Celtic", "", "Celtic", "Baroque"]
  np.testing.assert_allclose(np.asarray(library.duration_s), [30.0, 12.5] + [210.0] * 4)
  np.testing.assert_allclose(float(library.popularity.sum()), 1.0, rtol=1e-6)
  given = sim.library_from_index(index, popularity=np.arange(1.0, 7.0),
                                 attribute_names=("title",))
  np.testing.assert_allclose(np.asarray(given.popularity), np.arange(1.0, 7.0) / 21.0, rtol=1e-6)
  assert given.attributes["title"].tolist() == ["a", "b", "c", "", "d", "e"]
  with pytest.raises(ValueError, match="popularity"):
    sim.library_from_index(index, popularity=np.ones(5))

  protos = sim.make_prototypes(jax.random.key(0), library, 5, method="attributes",
                               attribute_names=("mood", "style"), min_tracks=1)
  assert protos.names == ("sad Baroque", "sad Celtic", "calm Baroque")
  config = sim.SimConfig(num_events=4, bag_size=2, active_per_session=2, playlist_length=3)
  world = sim.make_world(jax.random.key(1), library, protos, config)
  plan = sim.sample_sessions(jax.random.key(2), 5, world)
  assert plan.playlist.shape == (5, 3)
  probabilities = sim.true_probabilities(world, plan.session(0), 3)
  assert probabilities.shape == (6,) and np.all(np.isfinite(np.asarray(probabilities)))


# ------------------------------------------------------------------ sessions


def test_session_plan_statistics(world, library):
  config = world.config
  plan = jax.tree.map(np.asarray, sim.sample_sessions(jax.random.key(3), NUM_SESSIONS, world))
  num_sessions, num_events = plan.prototype.shape
  assert (num_sessions, num_events) == (NUM_SESSIONS, config.num_events)
  assert not plan.switch[:, 0].any()
  later = plan.switch[:, 1:]
  assert abs(later.mean() - 0.1) < _binomial_tolerance(0.1, later.size)
  assert not (plan.text_request & ~plan.switch).any()
  text_given_switch = plan.text_request[plan.switch].mean()
  assert abs(text_given_switch - 0.3) < _binomial_tolerance(0.3, plan.switch.sum())
  # The mood changes exactly at switches, always within the active set.
  np.testing.assert_array_equal(plan.prototype[:, 1:] != plan.prototype[:, :-1], later)
  np.testing.assert_array_equal(plan.prototype[:, 0], plan.active[:, 0])
  assert all(set(p) <= set(a) for p, a in zip(plan.prototype, plan.active))
  assert all(set(a) <= set(b) and len(set(b)) == config.bag_size
             for a, b in zip(plan.active, plan.bag))
  # A switch goes to either of the two other active prototypes, evenly.
  before, after = plan.prototype[:, :-1][later], plan.prototype[:, 1:][later]
  rows = np.nonzero(later)[0]
  first_other = np.array([[a for a in plan.active[r] if a != b][0]
                          for r, b in zip(rows, before)])
  assert abs((after == first_other).mean() - 0.5) < _binomial_tolerance(0.5, len(rows))
  # Taste: the weighted sum of the bag's centres, unit norm.
  centres = np.asarray(world.prototypes.centres)
  taste = np.einsum("bm,bmd->bd", plan.bag_weights, centres[plan.bag])
  np.testing.assert_allclose(taste, plan.taste, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(plan.taste, axis=1), 1.0, atol=1e-5)
  # Seeded playlists: the seed, then its nearest neighbours by cosine.
  np.testing.assert_array_equal(plan.playlist[:, 0], plan.seed_track)
  embeddings = np.asarray(library.embeddings)
  for b in range(5):
    cosine = embeddings @ embeddings[plan.seed_track[b]]
    cosine[plan.seed_track[b]] = np.inf
    np.testing.assert_array_equal(np.sort(plan.playlist[b]),
                                  np.sort(np.argsort(-cosine)[:config.playlist_length]))
  # Seeds come from near the first mood's centre.
  seed_cosine = embeddings[plan.seed_track] @ centres.T
  assert np.mean(seed_cosine.argmax(1) == plan.active[:, 0]) > 0.7
  assert abs(plan.bias_offset.std() - config.session_noise) < 0.03
  assert abs(plan.noise_weights.std() - 1.0) < 0.03


def test_single_active_prototype_never_switches(world):
  config = world.config.replace(active_per_session=1, switch_probability=0.5)
  plan = sim.sample_sessions(jax.random.key(0), 200, world.replace(config=config))
  assert not np.asarray(plan.switch).any()
  assert np.all(np.asarray(plan.prototype) == np.asarray(plan.active)[:, :1])


def test_popularity_seeding_draws_by_popularity(world, library):
  config = world.config.replace(seeding="popularity", playlist_length=1)
  plan = sim.sample_sessions(jax.random.key(0), 10000, world.replace(config=config))
  assert np.all(np.asarray(plan.seed_track) == -1)
  frequency = np.bincount(np.asarray(plan.playlist[:, 0]), minlength=NUM_TRACKS) / 10000
  popularity = np.asarray(library.popularity, np.float64)
  top = np.argsort(-popularity)[:5]
  np.testing.assert_allclose(frequency[top], popularity[top],
                             atol=_binomial_tolerance(popularity[top[0]], 10000))


# ------------------------------------------------------------------ choice model


def test_true_probabilities_match_the_formula(world, library):
  config = world.config
  plan = sim.sample_sessions(jax.random.key(4), 6, world)
  embeddings = np.asarray(library.embeddings, np.float64)
  centres = np.asarray(world.prototypes.centres, np.float64)
  projection = np.asarray(world.basis, np.float64)[NUM_PROTOTYPES:].T  # [d, r]
  noise = embeddings @ projection
  # Unit variance of the noise term over tracks, on average over listeners.
  weights = np.random.default_rng(0).normal(size=(config.noise_rank, 500))
  assert abs(np.mean((noise @ weights) ** 2) - 1.0) < 0.1
  true_fn = jax.jit(sim.true_probabilities)
  for b in range(6):
    session = plan.session(b)
    for event in (0, 13, config.num_events - 1):
      k = int(session.prototype[event])
      logit = (config.slope * embeddings @ centres[k]
               + config.taste_weight * embeddings @ np.asarray(session.taste, np.float64)
               + config.taste_noise * noise @ np.asarray(session.noise_weights, np.float64)
               + config.bias + float(session.bias_offset))
      expected = 1.0 / (1.0 + np.exp(-logit))
      oracle = np.asarray(true_fn(world, session, event))
      np.testing.assert_allclose(oracle, expected, atol=2e-5)
      state = sim.choice_state(world, session, event)
      np.testing.assert_allclose(np.asarray(sim.listen_probability(library.embeddings, state)),
                                 expected, atol=2e-5)
      tracks = session.playlist[:7]
      np.testing.assert_allclose(np.asarray(sim.track_probabilities(world, session, event, tracks)),
                                 oracle[np.asarray(tracks)], atol=1e-6)


def test_respond_frequencies_match_p():
  config = sim.SimConfig(like_probability=0.2, dislike_probability=0.3, early_skip_share=0.6,
                         late_skip_probability=0.25)
  levels = np.array([0.1, 0.5, 0.9], np.float32)
  repeats = 40000
  p = jnp.asarray(np.repeat(levels, repeats))
  kind, fraction, label = jax.jit(sim.respond)(jax.random.key(0), p, config)
  kind, fraction, label = map(np.asarray, (kind, fraction, label))
  np.testing.assert_array_equal(label, np.asarray(examples.LABEL_OF_KIND)[kind])
  np.testing.assert_array_equal(
      kind, np.asarray(examples.play_kind(fraction, kind == examples.LIKE,
                                          kind == examples.DISLIKE)))
  assert np.all((fraction > 0.0) & (fraction <= 1.0))
  assert np.all(fraction[kind == examples.LIKE] == 1.0)
  early = (kind == examples.SKIP) | (kind == examples.DISLIKE)
  assert np.all(fraction[early] < config.skip_threshold)
  partial = fraction[kind == examples.PARTIAL]
  assert np.all((partial >= config.skip_threshold) & (partial < config.majority))
  assert np.all(fraction[kind == examples.LISTEN] > config.majority)
  for i, q in enumerate(levels):
    rows = slice(i * repeats, (i + 1) * repeats)
    expected = {
        examples.LIKE: q * 0.2, examples.LISTEN: q * 0.8,
        examples.SKIP: (1 - q) * 0.6 * 0.7, examples.DISLIKE: (1 - q) * 0.6 * 0.3,
        examples.PARTIAL: (1 - q) * 0.4}
    for code, probability in expected.items():
      observed = np.mean(kind[rows] == code)
      assert abs(observed - probability) < _binomial_tolerance(probability, repeats), code
    late = np.mean((kind[rows] == examples.LISTEN) & (fraction[rows] < 1.0))
    assert abs(late - q * 0.8 * 0.25) < _binomial_tolerance(q * 0.2, repeats)


def test_jit_vmap_session_loop_matches_one_session_at_a_time(world):
  """A study-like loop: serve the oracle's best unplayed track, respond."""
  plan = sim.sample_sessions(jax.random.key(5), 16, world)

  def run(session, rng):
    def event(played, t):
      p = sim.true_probabilities(world, session, t)
      track = jnp.argmax(jnp.where(played, -1.0, p))
      kind, fraction, label = sim.respond(jax.random.fold_in(rng, t), p[track], world.config)
      return played.at[track].set(True), (track, kind, fraction, label)
    played = jnp.zeros(world.library.num_tracks, bool)
    return jax.lax.scan(event, played, jnp.arange(world.config.num_events))[1]

  keys = jax.random.split(jax.random.key(6), 16)
  batched = jax.jit(jax.vmap(run))(plan, keys)
  assert batched[0].shape == (16, world.config.num_events)
  single_fn = jax.jit(run)
  for b in (0, 11):
    single = single_fn(plan.session(b), keys[b])
    for x, y in zip(batched, single):
      np.testing.assert_allclose(np.asarray(x[b]), np.asarray(y), atol=1e-6)
  # The oracle's picks are mostly accepted.
  assert np.mean(np.asarray(batched[3])) > 0.8


# ------------------------------------------------------------------ calibration


@pytest.mark.parametrize("reference", ["playlist", "library"])
def test_calibration_hits_spotify_skip_rates(world, reference):
  config = sim.calibrate(jax.random.key(7), world, num_sessions=NUM_SESSIONS,
                         reference=reference)
  calibrated = world.replace(config=config)
  rates = sim.shuffle_rates(jax.random.key(8), calibrated, num_sessions=NUM_SESSIONS,
                            reference=reference)
  assert abs(rates["early_skip"] - 0.24) < 0.02, rates
  assert abs(rates["skip_before_end"] - 0.475) < 0.02, rates
  # A shuffle is far from what the listener would pick.
  assert rates["oracle_p"] > rates["mean_p"] + 0.2


def test_default_config_is_calibrated_on_the_default_synthetic_library():
  library = sim.synthetic_library(jax.random.key(0))
  prototypes = sim.make_prototypes(jax.random.key(1), library, sim.SimConfig().num_prototypes)
  world = sim.make_world(jax.random.key(2), library, prototypes)
  rates = sim.shuffle_rates(jax.random.key(3), world, num_sessions=1024, with_oracle=False)
  assert abs(rates["early_skip"] - 0.24) < 0.03, rates
  assert abs(rates["skip_before_end"] - 0.475) < 0.03, rates


def test_calibrate_rejects_unreachable_targets(world):
  with pytest.raises(ValueError, match="cannot be met"):
    sim.calibrate(jax.random.key(0), world, early_skip_rate=0.5, skip_before_end_rate=0.3)
