"""The session classifier and its weights against scikit-learn and numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from jplaylist.session import examples
from jplaylist.session import logreg


def _problem(rng, num_examples, dim, zero_fraction=0.3):
  x = rng.standard_normal((num_examples, dim)).astype(np.float32)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  truth = rng.standard_normal(dim)
  y = (x @ truth + 0.5 * rng.standard_normal(num_examples) > 0).astype(np.float32)
  y[:2] = [0.0, 1.0]
  w = rng.uniform(0.2, 3.0, num_examples).astype(np.float32)
  w[rng.uniform(size=num_examples) < zero_fraction] = 0.0
  w[:2] = 1.0
  return x, y, w


def _sklearn(x, y, w, C):
  keep = w > 0
  model = LogisticRegression(C=C, tol=1e-12, max_iter=100_000).fit(
      x[keep].astype(np.float64), y[keep], sample_weight=w[keep].astype(np.float64))
  return model.coef_[0], model.intercept_[0]


@pytest.mark.parametrize("num_examples,dim,C", [(12, 128, 1.0), (50, 128, 1.0), (60, 16, 4.0),
                                                 (30, 32, 0.1)])
def test_fit_equals_scikit_learn(num_examples, dim, C):
  x, y, w = _problem(np.random.default_rng(num_examples + dim), num_examples, dim)
  fit = logreg.fit(x, y, w, C=C)
  coef, intercept = _sklearn(x, y, w, C)
  np.testing.assert_allclose(fit.coef, coef, atol=1e-4)
  np.testing.assert_allclose(fit.intercept, intercept, atol=1e-4)


def test_vmapped_fits_with_different_masks_equal_scikit_learn():
  rng = np.random.default_rng(0)
  problems = [_problem(rng, 40, 64, zero_fraction=f) for f in (0.0, 0.3, 0.6, 0.8)]
  x, y, w = (np.stack(p) for p in zip(*problems))
  fits = jax.jit(jax.vmap(lambda a, b, c: logreg.fit(a, b, c, C=2.0)))(x, y, w)
  for i, (xi, yi, wi) in enumerate(problems):
    coef, intercept = _sklearn(xi, yi, wi, 2.0)
    np.testing.assert_allclose(fits.coef[i], coef, atol=1e-4)
    np.testing.assert_allclose(fits.intercept[i], intercept, atol=1e-4)


def test_a_warm_start_converges_in_fewer_iterations():
  rng = np.random.default_rng(1)
  x, y, w = _problem(rng, 40, 128, zero_fraction=0.0)
  previous = logreg.fit(x[:-1], y[:-1], w[:-1])
  init = previous._replace(alpha=jnp.concatenate([previous.alpha, jnp.zeros(1)]))
  warm = logreg.fit(x, y, w, init=init, num_newton=3)
  coef, _ = _sklearn(x, y, w, 1.0)
  np.testing.assert_allclose(warm.coef, coef, atol=1e-3)


def test_degenerate_histories_stay_finite():
  x = np.eye(4, dtype=np.float32)
  empty = logreg.fit(x, np.zeros(4), np.zeros(4))
  assert np.all(np.asarray(empty.coef) == 0) and float(empty.intercept) == 0
  one_class = logreg.fit(x, np.ones(4), np.array([1, 1, 0, 0], np.float32))
  assert np.all(np.isfinite(one_class.coef)) and np.isfinite(float(one_class.intercept))
  # All positive: the free intercept carries it, towards the positive class.
  assert float(one_class.intercept) > 1.0


def test_laplace_samples_have_the_posterior_mean_and_covariance():
  rng = np.random.default_rng(2)
  x, y, w = _problem(rng, 10, 3, zero_fraction=0.0)
  fit = logreg.fit(x, y, w, C=1.0)
  coef, intercept = logreg.laplace_sample(jax.random.key(0), fit, x, y, w, C=1.0,
                                          num_samples=40_000)
  samples = np.concatenate([np.asarray(coef), np.asarray(intercept)[:, None]], axis=1)
  # The exact Hessian of 0.5 |w|^2 + C sum s logloss at the mode, in (w, b).
  z = x @ np.asarray(fit.coef) + float(fit.intercept)
  p = 1 / (1 + np.exp(-z))
  design = np.concatenate([x, np.ones((10, 1))], axis=1).astype(np.float64)
  hessian = design.T @ (design * (w * p * (1 - p))[:, None])
  hessian[:3, :3] += np.eye(3)
  covariance = np.linalg.inv(hessian)
  mode = np.r_[np.asarray(fit.coef), float(fit.intercept)]
  np.testing.assert_allclose(samples.mean(0), mode, atol=4 * np.sqrt(np.diag(covariance) / 40_000).max())
  np.testing.assert_allclose(np.cov(samples.T), covariance, atol=0.03 * np.abs(covariance).max())


def test_weight_rules_on_a_hand_built_history():
  history = examples.History.empty(6, 2)
  events = [(examples.TEXT, 0, 0.0), (examples.LISTEN, 0, 0.0), (examples.SKIP, 1, 200.0),
            (examples.LIKE, 2, 230.0), (examples.PARTIAL, 3, 400.0)]
  for kind, step, time in events:
    if kind == examples.TEXT:
      history = history.append_text(np.ones(2), step, time)
    else:
      history = history.append_track(np.ones(2), kind, step, time)
  np.testing.assert_array_equal(history.label[:5], [1, 1, 0, 1, 0])
  np.testing.assert_array_equal(history.is_audio[:5], [0, 1, 1, 1, 1])
  rules = examples.WeightRules.create(text_weight=3.0, like_weight=2.0, recency_decay=0.5,
                                      time_half_life_s=100.0)
  weights = np.asarray(examples.weights(history, rules, now_step=4, now_time=500.0))
  ages = np.array([4, 4, 3, 2, 1])
  elapsed = 500.0 - np.array([0.0, 0.0, 200.0, 230.0, 400.0])
  base = np.array([3.0, 1.0, 1.0, 2.0, 0.0])
  np.testing.assert_allclose(weights[:5], base * 0.5**ages * 0.5**(elapsed / 100.0), rtol=1e-5)
  assert weights[5] == 0.0
  assert float(examples.evidence(history)) == 4.0
  # The play-time rule: under 5% an early skip, under half partial, else a listen.
  kinds = examples.play_kind(jnp.array([0.01, 0.3, 0.7, 0.01, 0.9]),
                             liked=jnp.array([0, 0, 0, 0, 1], bool),
                             disliked=jnp.array([0, 0, 0, 1, 0], bool))
  np.testing.assert_array_equal(kinds, [examples.SKIP, examples.PARTIAL, examples.LISTEN,
                                        examples.DISLIKE, examples.LIKE])
