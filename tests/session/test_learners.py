"""The session learners against independent references: knn_examples against
a numpy loop, the hand-over's shape, the ring-buffer history and its gram and
classifier fit against scikit-learn, finite scores of every strategy, and
`sweepable_fields` both ways."""

import functools

import jax
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from jplaylist.session import examples
from jplaylist.session import logreg
from jplaylist.session import strategies

DIM = 8


def _unit(a):
  # Unused history slots are zero rows: keep them zero.
  return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def _random_history(rng, num_used, max_examples):
  """A history with random unit examples of random kinds (PARTIAL included)."""
  history = examples.History.empty(max_examples, DIM)
  kinds = rng.choice([examples.LISTEN, examples.SKIP, examples.LIKE, examples.DISLIKE,
                      examples.TEXT, examples.PARTIAL], size=num_used)
  kinds[:2] = [examples.LISTEN, examples.SKIP]
  x = _unit(rng.normal(size=(num_used, DIM))).astype(np.float32)
  for event, (kind, row) in enumerate(zip(kinds, x)):
    if kind == examples.TEXT:
      history = history.append_text(row, event, 0.0, label=float(rng.integers(0, 2)))
    else:
      history = history.append_track(row, int(kind), event, 0.0)
  return history


def _knn_examples_reference(x, label, weight, cand, k, negative_weight):
  """Plain loop: per candidate, top-k weighted cosines per class."""
  x, cand = _unit(np.asarray(x, np.float64)), _unit(np.asarray(cand, np.float64))
  scores = np.zeros(len(cand))
  for n, c in enumerate(cand):
    sides = []
    for members in (label > 0.5, label <= 0.5):
      index = np.flatnonzero(members & (weight > 0))
      cosine = x[index] @ c
      nearest = index[np.argsort(-cosine)[:k]]
      sides.append(np.sum(weight[nearest] * (x[nearest] @ c)))
    scores[n] = sides[0] - negative_weight * sides[1]
  return scores


@pytest.mark.parametrize("k", [1, 2, 3, 50])
@pytest.mark.parametrize("num_used", [6, 16])
def test_knn_examples_scores_equal_a_numpy_loop(k, num_used):
  rng = np.random.default_rng(10 * k + num_used)
  history = _random_history(rng, num_used, 16)
  rules = examples.WeightRules.create()
  weights = np.asarray(examples.weights(history, rules, num_used, 0.0))
  cand = rng.normal(size=(25, DIM)).astype(np.float32)
  got = strategies.knn_examples_scores(history, weights, cand, float(k), 0.7)
  want = _knn_examples_reference(np.asarray(history.x), np.asarray(history.label), weights,
                                 cand, k, 0.7)
  np.testing.assert_allclose(got, want, atol=1e-5)


def _handover_after(kinds, params):
  history = examples.History.empty(64, DIM)
  for event, kind in enumerate(kinds):
    history = history.append_track(np.ones(DIM, np.float32), kind, event, 0.0)
  weights = examples.weights(history, params.rules, len(kinds), 0.0)
  return float(strategies.handover(history, weights, params))


def _ramp_reference(balance, at, width):
  s = lambda z: 1.0 / (1.0 + np.exp(-z))
  return (s((balance - at) / width) - s(-at / width)) / (1.0 - s(-at / width))


def test_handover_is_zero_with_one_class():
  params = strategies.StrategyParams.create()
  for kind in (examples.LISTEN, examples.SKIP, examples.LIKE):
    assert _handover_after([kind] * 20, params) == 0.0
  assert _handover_after([], params) == 0.0


def test_handover_never_decreases_as_examples_are_added():
  params = strategies.StrategyParams.create()
  rng = np.random.default_rng(0)
  kinds = list(rng.choice([examples.LISTEN, examples.SKIP, examples.LIKE, examples.DISLIKE],
                          size=30))
  values = [_handover_after(kinds[:n], params) for n in range(len(kinds) + 1)]
  assert np.all(np.diff(values) >= -1e-6), values
  # Balanced additions (one of each class per step) strictly raise it,
  # following the ramp of the balanced evidence P = N = n.
  balanced = [_handover_after([examples.LISTEN, examples.SKIP] * n, params) for n in range(8)]
  assert np.all(np.diff(balanced) > 0), balanced
  np.testing.assert_allclose(balanced, _ramp_reference(np.arange(8.0), 4.0, 1.5), atol=1e-5)


def test_first_skip_after_five_listens_hands_over_little():
  params = strategies.StrategyParams.create()
  value = _handover_after([examples.LISTEN] * 5 + [examples.SKIP], params)
  np.testing.assert_allclose(value, _ramp_reference(2 * 5 * 1 / 6, 4.0, 1.5), atol=1e-6)
  assert 0.0 < value < 0.5


def test_ring_history_keeps_the_last_examples_and_fits_like_sklearn():
  rng = np.random.default_rng(1)
  C = 2.0
  params = strategies.StrategyParams.create(C=C)
  x = _unit(rng.normal(size=(7, DIM))).astype(np.float32)
  kinds = [examples.LISTEN, examples.LIKE, examples.SKIP, examples.LISTEN, examples.SKIP,
           examples.DISLIKE, examples.LIKE]
  state = strategies.init_state(4, DIM, np.zeros(DIM, np.float32))
  cand = _unit(rng.normal(size=(10, DIM))).astype(np.float32)
  stats = strategies.candidate_stats(cand)
  for event, (row, kind) in enumerate(zip(x, kinds)):
    state = strategies.observe_track(state, params, row, kind, event, 0.0)
    # Score after every event, so the classifier is warm-started as in a study.
    _, state = strategies.score("classifier", state, params, cand, stats, event, 0.0,
                                jax.random.key(0))
  history = state.history
  assert int(history.num_dropped) == 3 and bool(np.all(history.mask))
  # Example i sits in slot i mod 4: the last four are 3, 4, 5, 6.
  slots = [i % 4 for i in range(3, 7)]
  np.testing.assert_array_equal(np.asarray(history.x)[slots], x[3:])
  np.testing.assert_array_equal(np.asarray(history.kind)[slots], kinds[3:])
  hx = np.asarray(history.x, np.float64)
  np.testing.assert_allclose(state.gram, hx @ hx.T, atol=1e-6)
  weights = np.asarray(examples.weights(history, params.rules, 6, 0.0))
  label = np.asarray(history.label)
  ref = LogisticRegression(C=C, tol=1e-10, max_iter=100000).fit(
      hx, label, sample_weight=weights)
  cold = logreg.fit(history.x, history.label, weights, C=C, gram=state.gram)
  for fit in (cold, state.fit):  # from scratch, and warm-started through the ring
    np.testing.assert_allclose(fit.coef, ref.coef_[0], atol=1e-4)
    np.testing.assert_allclose(fit.intercept, ref.intercept_[0], atol=1e-4)


# A session touching every weight rule: kinds, text, and spread-out times.
_SESSION = [(examples.LISTEN, 0.0), (examples.SKIP, 40.0), (examples.TEXT, 45.0),
            (examples.LIKE, 60.0), (examples.DISLIKE, 200.0), (examples.LISTEN, 220.0),
            (examples.SKIP, 400.0), (examples.LISTEN, 410.0)]


def _cand_and_session(seed):
  rng = np.random.default_rng(seed)
  cand = _unit(rng.normal(size=(20, DIM))).astype(np.float32)
  rows = _unit(cand[:len(_SESSION)] + 0.3 * rng.normal(size=(len(_SESSION), DIM)))
  taste = _unit(rng.normal(size=DIM)).astype(np.float32)
  return cand, rows.astype(np.float32), taste


@functools.partial(jax.jit, static_argnums=(0, 1))
def _scores_after(strategy, num_events, params, cand, rows, taste):
  """Scores of `strategy` after the first `num_events` of _SESSION."""
  state = strategies.init_state(16, DIM, taste)
  stats = strategies.candidate_stats(cand)
  for event, ((kind, elapsed), row) in enumerate(zip(_SESSION[:num_events], rows)):
    if kind == examples.TEXT:
      state = strategies.observe_text(state, row, event, elapsed)
    else:
      state = strategies.observe_track(state, params, row, kind, event, elapsed)
  scores, _ = strategies.score(strategy, state, params, cand, stats, num_events,
                               _SESSION[num_events - 1][1] + 10.0 if num_events else 0.0,
                               jax.random.key(3))
  return scores


@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
def test_every_strategy_gives_finite_scores_with_no_taste(strategy):
  cand, rows, _ = _cand_and_session(2)
  zero = np.zeros(DIM, np.float32)
  for params in (strategies.StrategyParams.create(),
                 strategies.StrategyParams.create(mlp_after=2.0)):
    for num_events in (0, 1, 3, len(_SESSION)):
      scores = np.asarray(_scores_after(strategy, num_events, params, cand, rows, zero))
      assert scores.shape == (len(cand),)
      assert np.all(np.isfinite(scores)), (strategy, num_events, scores)


# A value of each field far from its default (and from the base below).
_CHANGED = {"text_weight": 0.25, "like_weight": 0.25, "listen_weight": 0.25,
            "skip_weight": 0.25, "dislike_weight": 0.25, "recency_decay": 0.5,
            "time_half_life_s": 30.0, "C": 0.1, "handover_at": 1.0, "handover_width": 0.5,
            "knn_negative": 2.0, "knn_k": 1.0, "mix_weight": 0.9, "mix_half_life": 1.0,
            "taste_rate": 0.5, "reject_taste_rate": 0.3, "ucb_alpha": 3.0, "ucb_ridge": 0.1,
            "ucb_label_offset": 0.5,
            "thompson_scale": 3.0, "mlp_after": 100.0, "mlp_learning_rate": 0.5}


def test_changed_values_cover_every_field():
  fields = set(examples.WeightRules.__dataclass_fields__) | (
      set(strategies.StrategyParams.__dataclass_fields__) - {"rules"})
  assert set(_CHANGED) == fields


@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
def test_sweepable_fields_are_exactly_the_fields_that_matter(strategy):
  cand, rows, taste = _cand_and_session(4)
  # mlp_after below the session's evidence, so adaptive_mlp uses (and learns
  # with) its MLP and its two knobs matter.
  base = strategies.StrategyParams.create(mlp_after=4.0)
  num_events = len(_SESSION)
  reference = np.asarray(_scores_after(strategy, num_events, base, cand, rows, taste))
  listed = set(strategies.sweepable_fields(strategy))
  assert listed <= set(_CHANGED)
  for field, value in _CHANGED.items():
    scores = np.asarray(_scores_after(strategy, num_events, base.with_values(**{field: value}),
                                      cand, rows, taste))
    if field in listed:
      assert np.max(np.abs(scores - reference)) > 1e-4, (strategy, field)
    else:
      np.testing.assert_array_equal(scores, reference, err_msg=f"{strategy} {field}")
