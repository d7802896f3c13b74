"""No hidden truth in the strategies: the firewall between simulator and learners.

Two plans that differ in the listener's hidden state (bag, bag weights, taste,
noise, the session's logit offset, its moods where no text request names them)
but agree on everything a player observes (the seeded playlist, the text
requests with their events and embeddings, the earlier sessions' tracks and
outcomes) must be served the same tracks by every strategy but the oracle:
exactly when the outcomes are forced to agree, and up to and including the
first event whose outcome differs when the listener reacts freely. The
background model every learner starts from is checked against numpy.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jplaylist.session import background
from jplaylist.session import examples
from jplaylist.session import simulator
from jplaylist.session import strategies
from jplaylist.session import study

NUM_SESSIONS = 6
NUM_EVENTS = 12
LEARNERS = ("adaptive", "adaptive_mlp", "knn", "knn_examples", "classifier", "linucb",
            "thompson")
NON_ORACLE = LEARNERS + ("initial", "popularity", "shuffle")
# A played fraction consistent with each kind (LISTEN, SKIP, LIKE, DISLIKE, TEXT, PARTIAL).
FRACTION_OF_KIND = np.array([1.0, 0.01, 1.0, 0.02, 1.0, 0.3], np.float32)


@pytest.fixture(scope="module")
def world():
  key = jax.random.key(0)
  library = simulator.synthetic_library(key, 400, 16, 6)
  prototypes = simulator.make_prototypes(key, library, 8)
  # Frequent switches with requests, so both kinds of event occur in 12 events.
  config = simulator.SimConfig(num_events=NUM_EVENTS, playlist_length=30, bag_size=4,
                               active_per_session=3, switch_probability=0.3,
                               text_probability=0.5, num_prototypes=8, history_sessions=2)
  return simulator.make_world(key, library, prototypes, config)


@pytest.fixture(scope="module")
def plans(world):
  """(a, b): b has its own hidden state and a's observable state."""
  a = simulator.sample_sessions(jax.random.key(1), NUM_SESSIONS, world)
  other = simulator.sample_sessions(jax.random.key(2), NUM_SESSIONS, world)
  request = a.switch & a.text_request
  b = other.replace(
      playlist=a.playlist, seed_track=a.seed_track,
      # The same requests at the same events, naming the same prototypes;
      # b's own (silent) switches and moods elsewhere.
      switch=other.switch | request, text_request=request,
      prototype=jnp.where(request, a.prototype, other.prototype),
      history_track=a.history_track, history_kind=a.history_kind,
      history_fraction=a.history_fraction)
  # The premise: the hidden states differ, the observable ones agree.
  for name in ("bag_weights", "taste", "noise_weights", "bias_offset"):
    assert not np.allclose(np.asarray(getattr(a, name)), np.asarray(getattr(b, name))), name
  silent = ~np.asarray(request)
  assert np.any(np.asarray(a.prototype)[silent] != np.asarray(b.prototype)[silent])
  np.testing.assert_array_equal(np.asarray(b.switch & b.text_request), np.asarray(request))
  assert np.asarray(request).sum() > 0
  return a, b


@functools.partial(jax.jit, static_argnames=("strategy", "max_examples"))
def _served(world, plan, keys, forced_kinds, forced_fractions, *, strategy, max_examples):
  """[B, E] served tracks and outcome kinds of one strategy."""
  spec = study.StudySpec(strategies=(strategy,), ranking_metrics=False)
  params = strategies.StrategyParams.create()
  records = jax.vmap(lambda p, k, fk, ff: study._session(  # pylint: disable=protected-access
      world, p, params, k, strategy=strategy, spec=spec, max_examples=max_examples,
      forced_kinds=fk, forced_fractions=ff))(plan, keys, forced_kinds, forced_fractions)
  return records["track"], records["kind"]


def _run(world, plan, strategy, forced_kinds):
  """Served tracks and kinds; forced_kinds [B, E] (-1: the listener's own outcome)."""
  keys = jax.random.split(jax.random.key(3), NUM_SESSIONS)
  fractions = FRACTION_OF_KIND[np.maximum(forced_kinds, 0)]
  tracks, kinds = _served(world, plan, keys, jnp.asarray(forced_kinds, jnp.int32),
                          jnp.asarray(fractions), strategy=strategy,
                          max_examples=study.max_examples(plan))
  return np.asarray(tracks), np.asarray(kinds)


def _forced_kinds(seed):
  kinds = (examples.LISTEN, examples.SKIP, examples.LIKE, examples.DISLIKE, examples.PARTIAL)
  return np.random.default_rng(seed).choice(kinds, size=(NUM_SESSIONS, NUM_EVENTS))


@pytest.mark.parametrize("strategy", NON_ORACLE)
def test_same_observations_same_decisions(world, plans, strategy):
  a, b = plans
  forced = _forced_kinds(0)
  tracks_a, kinds_a = _run(world, a, strategy, forced)
  tracks_b, kinds_b = _run(world, b, strategy, forced)
  np.testing.assert_array_equal(kinds_a, forced)
  np.testing.assert_array_equal(kinds_b, forced)
  np.testing.assert_array_equal(tracks_a, tracks_b)


def test_the_oracle_sees_the_hidden_difference(world, plans):
  """The test above can fail: a strategy that reads hidden state (the oracle)
  serves the two plans differently under the same forced outcomes."""
  a, b = plans
  forced = _forced_kinds(0)
  tracks_a, _ = _run(world, a, "oracle", forced)
  tracks_b, _ = _run(world, b, "oracle", forced)
  assert np.mean(tracks_a != tracks_b) > 0.3


@pytest.mark.parametrize("strategy", NON_ORACLE)
def test_decisions_agree_until_the_first_different_observation(world, plans, strategy):
  a, b = plans
  free = np.full((NUM_SESSIONS, NUM_EVENTS), -1)
  tracks_a, kinds_a = _run(world, a, strategy, free)
  tracks_b, kinds_b = _run(world, b, strategy, free)
  # Same uniforms per (session, event): the outcomes differ exactly where one
  # listener accepts the track and the other does not, which changes the kind
  # (accepted kinds and rejected kinds are disjoint) and the played fraction.
  differs = kinds_a != kinds_b
  assert differs.any(axis=1).sum() >= NUM_SESSIONS // 2  # the listeners do react differently
  diverged_later = 0
  for session in range(NUM_SESSIONS):
    first = int(np.argmax(differs[session])) if differs[session].any() else NUM_EVENTS - 1
    np.testing.assert_array_equal(tracks_a[session, :first + 1],
                                  tracks_b[session, :first + 1], err_msg=f"session {session}")
    diverged_later += np.any(tracks_a[session, first + 1:] != tracks_b[session, first + 1:])
  if strategy in LEARNERS:  # a learner does follow what it observes
    assert diverged_later > 0
  else:  # the fixed orders never look at the outcomes
    assert diverged_later == 0


# ------------------------------------------------------------------ the background model


def _numpy_background(library, tracks, kinds, reject_weight):
  pull = np.select([np.isin(kinds, (examples.LISTEN, examples.LIKE)),
                    np.isin(kinds, (examples.SKIP, examples.DISLIKE))],
                   [1.0, -reject_weight], 0.0)
  v = pull.ravel() @ library[tracks.ravel()]
  norm = np.linalg.norm(v)
  return v / norm if norm >= background.MIN_NORM else np.zeros_like(v)


def test_background_model_against_numpy():
  rng = np.random.default_rng(0)
  library = rng.normal(size=(50, 8))
  library /= np.linalg.norm(library, axis=1, keepdims=True)
  tracks = rng.integers(0, 50, size=(5, 3, 7))
  kinds = rng.choice((examples.LISTEN, examples.SKIP, examples.LIKE, examples.DISLIKE,
                      examples.PARTIAL), size=(5, 3, 7))
  kinds[3] = examples.PARTIAL  # listener 3: nothing decisive observed
  for reject_weight in (0.0, 0.1, 0.5):
    got = np.asarray(background.background_models(
        jnp.asarray(library, jnp.float32), tracks, kinds, reject_weight=reject_weight))
    want = np.stack([_numpy_background(library, t, k, reject_weight)
                     for t, k in zip(tracks, kinds)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_array_equal(got[3], 0.0)
    np.testing.assert_allclose(np.linalg.norm(got[[0, 1, 2, 4]], axis=1), 1.0, atol=1e-5)
  # A rejected track pushes the model away from it, more with a larger weight.
  skipped = np.array([[[0, 1]]])
  pushed = [np.asarray(background.background_models(
      jnp.asarray(library, jnp.float32), skipped,
      np.array([[[examples.LISTEN, examples.SKIP]]]), reject_weight=w))[0] @ library[1]
            for w in (0.0, 0.1, 0.5)]
  assert pushed[0] > pushed[1] > pushed[2]
  with pytest.raises(ValueError, match="reject_weight=-1"):
    background.background_models(library, tracks, kinds, reject_weight=-1.0)
  with pytest.raises(ValueError, match="same shape"):
    background.background_models(library, tracks, kinds[:, :2])


def test_history_is_the_seeded_playlists_served_in_order(world, plans):
  a, _ = plans
  embeddings = np.asarray(world.library.embeddings)
  tracks = np.asarray(a.history_track)
  assert tracks.shape == (NUM_SESSIONS, world.config.history_sessions, NUM_EVENTS)
  # Each earlier session: its seed, then the seed's neighbours by falling cosine.
  cosine = np.einsum("bhd,bhtd->bht", embeddings[tracks[:, :, 0]], embeddings[tracks[:, :, 1:]])
  assert np.all(np.diff(cosine, axis=-1) <= 1e-6)
  kinds, fractions = np.asarray(a.history_kind), np.asarray(a.history_fraction)
  accepted = np.isin(kinds, (examples.LISTEN, examples.LIKE))
  np.testing.assert_array_equal(accepted, fractions > world.config.majority)
  # The studied session's own draws do not depend on how many earlier ones there are.
  none = simulator.sample_sessions(jax.random.key(1), NUM_SESSIONS, world.replace(
      config=world.config.replace(history_sessions=0)))
  assert none.history_track.shape == (NUM_SESSIONS, 0, NUM_EVENTS)
  for name in simulator.LISTENER_FIELDS + ("playlist", "prototype", "switch", "bias_offset"):
    np.testing.assert_array_equal(np.asarray(getattr(none, name)), np.asarray(getattr(a, name)))
  np.testing.assert_array_equal(np.asarray(background.background_models(
      world.library.embeddings, none.history_track, none.history_kind)), 0.0)
