"""Strategies' parts against direct numpy computations."""

import jax
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from jplaylist.session import examples
from jplaylist.session import logreg
from jplaylist.session import strategies

DIM = 8


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _state(rng, kinds, with_text=True):
  """A state after a text request (optional) and tracks of the given kinds."""
  state = strategies.init_state(12, DIM, _unit(rng.standard_normal(DIM)))
  params = strategies.StrategyParams.create()
  step = 0
  if with_text:
    state = strategies.observe_text(state, _unit(rng.standard_normal(DIM)), 0, 0.0)
  for kind in kinds:
    state = strategies.observe_track(state, params, _unit(rng.standard_normal(DIM)), kind,
                                     step, 10.0 * step)
    step += 1
  return state, params, step


def test_gram_is_kept_equal_to_the_examples_products():
  rng = np.random.default_rng(0)
  state, _, _ = _state(rng, [examples.LISTEN, examples.SKIP, examples.LIKE, examples.PARTIAL])
  # An invalid text request changes nothing.
  same = strategies.observe_text(state, np.ones(DIM), 9, 0.0, valid=False)
  for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
  x, mask = np.asarray(state.history.x), np.asarray(state.history.mask)
  expected = np.where(mask[:, None] & mask[None, :], x @ x.T, 0.0)
  np.testing.assert_allclose(state.gram, expected, atol=1e-6)
  assert int(state.history.num_examples) == 5


def test_knn_query_handover_and_mix_weight():
  rng = np.random.default_rng(1)
  state, params, step = _state(rng, [examples.LISTEN, examples.SKIP, examples.LISTEN])
  history = state.history
  w = np.asarray(examples.weights(history, params.rules, step))
  x, y = np.asarray(history.x), np.asarray(history.label)
  expected = _unit((w * y) @ x) - float(params.knn_negative) * _unit((w * (1 - y)) @ x)
  np.testing.assert_allclose(strategies.knn_query(history, w, params.knn_negative), expected,
                             atol=1e-6)
  evidence = float(examples.evidence(history))
  assert evidence == 4.0
  lam = float(strategies.handover(history, w, params))
  # Text + 2 listens positive, 1 skip negative: balanced evidence 2*3*1/4.
  sig = lambda v: 1 / (1 + np.exp(-v))
  balance = 2 * 3 * 1 / 4
  np.testing.assert_allclose(lam, (sig((balance - 4.0) / 1.5) - sig(-4.0 / 1.5))
                             / (1 - sig(-4.0 / 1.5)), atol=1e-6)
  # One class only: the classifier gets no weight.
  only_positive, _, step = _state(rng, [examples.LISTEN] * 6)
  w_positive = examples.weights(only_positive.history, params.rules, step)
  assert float(strategies.handover(only_positive.history, w_positive, params)) == 0.0
  np.testing.assert_allclose(strategies.mix_weight(history, params),
                             0.5 * 2.0 ** (-evidence / 5.0), atol=1e-6)


def test_standardized_equals_z_scores_over_candidates():
  rng = np.random.default_rng(2)
  cand = _unit(rng.standard_normal((50, DIM))).astype(np.float32)
  v = rng.standard_normal(DIM).astype(np.float32)
  unit, shift = strategies.standardized(v, strategies.candidate_stats(cand))
  scores = cand @ v
  np.testing.assert_allclose(cand @ np.asarray(unit) - float(shift),
                             (scores - scores.mean()) / scores.std(), atol=1e-4)


def test_adaptive_scores_are_the_weighted_z_scores_of_their_parts():
  rng = np.random.default_rng(3)
  state, params, step = _state(rng, [examples.LISTEN, examples.SKIP, examples.LISTEN,
                                     examples.SKIP, examples.LIKE])
  cand = _unit(rng.standard_normal((40, DIM))).astype(np.float32)
  stats = strategies.candidate_stats(cand)
  scores, new_state = strategies.score("adaptive", state, params, cand, stats, step, 50.0,
                                       jax.random.key(0), num_newton=10)
  history = state.history
  w = np.asarray(examples.weights(history, params.rules, step, 50.0))
  z = lambda s: (s - s.mean()) / s.std()
  lam = float(strategies.handover(history, w, params))
  rho = float(strategies.mix_weight(history, params))
  # The classifier part equals scikit-learn's fit on the weighted examples.
  keep = w > 0
  sk = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(
      np.asarray(history.x)[keep], np.asarray(history.label)[keep], sample_weight=w[keep])
  np.testing.assert_allclose(new_state.fit.coef, sk.coef_[0], atol=1e-4)
  expected = ((1 - rho) * (1 - lam) * z(cand @ np.asarray(strategies.knn_query(
      history, w, params.knn_negative))) + (1 - rho) * lam * z(cand @ sk.coef_[0])
              + rho * z(cand @ np.asarray(state.taste)))
  np.testing.assert_allclose(scores, expected, atol=2e-3)


def test_linucb_equals_the_direct_d_by_d_computation():
  rng = np.random.default_rng(4)
  state, params, step = _state(rng, [examples.LISTEN, examples.SKIP, examples.LIKE,
                                     examples.DISLIKE])
  params = params.with_values(ucb_alpha=0.7, ucb_ridge=2.0)
  cand = _unit(rng.standard_normal((30, DIM))).astype(np.float32)
  scores, _ = strategies.score("linucb", state, params, cand, strategies.candidate_stats(cand),
                               step, 0.0, jax.random.key(0))
  w = np.asarray(examples.weights(state.history, params.rules, step), np.float64)
  x, y = np.asarray(state.history.x, np.float64), np.asarray(state.history.label, np.float64)
  a = 2.0 * np.eye(DIM) + x.T @ (w[:, None] * x)
  theta = np.linalg.solve(a, x.T @ (w * y))
  bonus = 0.7 * np.sqrt(np.einsum("nd,nd->n", cand, np.linalg.solve(a, cand.T).T))
  np.testing.assert_allclose(scores, cand @ theta + bonus, atol=1e-4)
  # Centred labels: regression on y - 0.5, so a negative example pushes away.
  centred, _ = strategies.score("linucb", state, params.with_values(ucb_label_offset=0.5), cand,
                                strategies.candidate_stats(cand), step, 0.0, jax.random.key(0))
  theta = np.linalg.solve(a, x.T @ (w * (y - 0.5)))
  np.testing.assert_allclose(centred, cand @ theta + bonus, atol=1e-4)


def test_taste_moves_towards_listens_and_only_weakly_away_from_skips():
  taste = np.eye(DIM, dtype=np.float32)[0]
  params = strategies.StrategyParams.create()
  track = np.eye(DIM, dtype=np.float32)[1]
  state = strategies.init_state(4, DIM, taste)
  listened = strategies.observe_track(state, params, track, examples.LISTEN, 0, 0.0).taste
  skipped = strategies.observe_track(state, params, track, examples.SKIP, 0, 0.0).taste
  partial = strategies.observe_track(state, params, track, examples.PARTIAL, 0, 0.0).taste
  np.testing.assert_allclose(listened, _unit(taste + 0.02 * track), atol=1e-7)
  np.testing.assert_allclose(skipped, _unit(taste - 0.002 * track), atol=1e-7)
  np.testing.assert_allclose(partial, taste)


def test_mlp_learns_what_a_linear_classifier_cannot():
  rng = np.random.default_rng(5)
  points = rng.uniform(-1, 1, (40, 2)).astype(np.float32)
  labels = ((points[:, 0] > 0) ^ (points[:, 1] > 0)).astype(np.float32)  # XOR
  mlp = strategies.init_mlp(jax.random.key(0), 2)
  mlp = strategies.fit_mlp(mlp, points, labels, np.ones(40, np.float32), C=100.0,
                           learning_rate=0.05, num_steps=600)
  accuracy = np.mean((np.asarray(strategies.mlp_logits(mlp, points)) > 0) == labels)
  linear = logreg.fit(points, labels, np.ones(40), C=100.0)
  linear_accuracy = np.mean(((points @ np.asarray(linear.coef) + float(linear.intercept)) > 0)
                            == labels)
  assert accuracy >= 0.95 and linear_accuracy < 0.8


def test_adaptive_mlp_only_departs_from_adaptive_after_mlp_after_examples():
  rng = np.random.default_rng(6)
  state, params, step = _state(rng, [examples.LISTEN, examples.SKIP] * 3)
  cand = _unit(rng.standard_normal((30, DIM))).astype(np.float32)
  stats = strategies.candidate_stats(cand)
  linear, _ = strategies.score("adaptive", state, params, cand, stats, step, 0.0,
                               jax.random.key(0))
  late = params.with_values(mlp_after=100.0)
  same, _ = strategies.score("adaptive_mlp", state, late, cand, stats, step, 0.0,
                             jax.random.key(0))
  np.testing.assert_allclose(same, linear, atol=1e-5)
  early = params.with_values(mlp_after=2.0)
  other, new_state = strategies.score("adaptive_mlp", state, early, cand, stats, step, 0.0,
                                      jax.random.key(0))
  assert not np.allclose(other, linear, atol=1e-3)
  assert not np.allclose(new_state.mlp["w2"], 0.0)


def test_unknown_strategy_is_rejected():
  rng = np.random.default_rng(7)
  state, params, step = _state(rng, [examples.LISTEN])
  cand = np.eye(DIM, dtype=np.float32)
  with pytest.raises(ValueError, match="unknown strategy 'ucb'"):
    strategies.score("ucb", state, params, cand, strategies.candidate_stats(cand), step, 0.0,
                     jax.random.key(0))
