"""Dual-Newton logistic regression against scikit-learn; Laplace sampler
against the exact Laplace posterior (numpy inverse of the Hessian)."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from jplaylist.session import logreg

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _problem(seed, num_examples, dim, zero_fraction=0.2):
  """Unit-norm examples, labels from a planted model, weights with zeros."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_examples, dim))
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  planted = rng.normal(size=dim) * 2.0
  label = (rng.random(num_examples) < 1 / (1 + np.exp(-x @ planted))).astype(np.float32)
  label[:2] = [0, 1]  # both classes present
  weight = rng.uniform(0.2, 3.0, num_examples)
  weight[rng.random(num_examples) < zero_fraction] = 0.0
  weight[:2] = 1.0
  return x.astype(np.float32), label, weight.astype(np.float32)


def _sklearn(x, label, weight, C):
  used = weight > 0
  ref = LogisticRegression(C=C, tol=1e-10, max_iter=100000)
  ref.fit(x[used].astype(np.float64), label[used], sample_weight=weight[used])
  return ref.coef_[0], ref.intercept_[0]


@pytest.mark.parametrize("num_examples,dim,C", [
    (20, 8, 0.5),      # T > d
    (50, 128, 1.0),    # T < d: the session regime
    (50, 128, 10.0),
    (120, 16, 5.0),    # T >> d
])
def test_fit_matches_sklearn(num_examples, dim, C):
  x, label, weight = _problem(num_examples + dim, num_examples, dim)
  got = jax.jit(lambda *a: logreg.fit(*a, C=C))(x, label, weight)
  coef, intercept = _sklearn(x, label, weight, C)
  np.testing.assert_allclose(got.coef, coef, atol=1e-4)
  np.testing.assert_allclose(got.intercept, intercept, atol=1e-4)
  # Representer form: coef = X^T alpha, alpha 0 on zero-weight slots.
  np.testing.assert_allclose(got.alpha @ x, got.coef, atol=1e-5)
  assert np.all(np.asarray(got.alpha)[weight == 0] == 0)


def test_lu_solver_matches_sklearn_too():
  x, label, weight = _problem(3, 30, 12)
  got = logreg.fit(x, label, weight, C=2.0, solver="solve")
  coef, intercept = _sklearn(x, label, weight, 2.0)
  np.testing.assert_allclose(got.coef, coef, atol=1e-4)
  np.testing.assert_allclose(got.intercept, intercept, atol=1e-4)


def test_vmap_with_different_masks_per_session():
  max_examples, dim, C = 40, 24, 2.0
  used = [3, 10, 25, 40]
  xs, labels, weights, refs = [], [], [], []
  rng = np.random.default_rng(7)
  for i, n in enumerate(used):
    x, label, weight = _problem(100 + i, max_examples, dim, zero_fraction=0.1)
    weight[n:] = 0.0
    x[n:] = rng.normal(size=(max_examples - n, dim))  # padding holds garbage
    label[n:] = rng.integers(0, 2, max_examples - n)
    xs.append(x), labels.append(label), weights.append(weight)
    refs.append(_sklearn(x, label, weight, C))
  fits = jax.jit(jax.vmap(lambda *a: logreg.fit(*a, C=C)))(
      np.stack(xs), np.stack(labels), np.stack(weights))
  for i, (coef, intercept) in enumerate(refs):
    np.testing.assert_allclose(fits.coef[i], coef, atol=1e-4)
    np.testing.assert_allclose(fits.intercept[i], intercept, atol=1e-4)


def test_vmap_over_C_and_nested_vmap():
  x, label, weight = _problem(11, 30, 10)
  cs = jnp.array([0.3, 3.0])
  batch = np.stack([x, x[::-1]]), np.stack([label, label[::-1]]), np.stack([weight, weight[::-1]])
  fits = jax.jit(jax.vmap(lambda c: jax.vmap(lambda *a: logreg.fit(*a, C=c))(*batch)))(cs)
  for i, c in enumerate(np.asarray(cs)):
    for j in range(2):
      coef, intercept = _sklearn(batch[0][j], batch[1][j], batch[2][j], float(c))
      np.testing.assert_allclose(fits.coef[i, j], coef, atol=1e-4)
      np.testing.assert_allclose(fits.intercept[i, j], intercept, atol=1e-4)


def test_warm_start_needs_fewer_iterations():
  """Event t+1 after event t: one new example, every weight decayed once."""
  x, label, base = _problem(1, 50, 64, zero_fraction=0.0)
  age = np.arange(50)[::-1]
  previous = logreg.fit(x, label, np.where(age > 0, base * 0.85 ** (age - 1), 0.0), C=3.0)
  weight = (base * 0.85 ** age).astype(np.float32)
  coef, _ = _sklearn(x, label, weight, 3.0)
  warm = logreg.fit(x, label, weight, C=3.0, num_newton=2, init=previous)
  cold = logreg.fit(x, label, weight, C=3.0, num_newton=2)
  assert np.abs(np.asarray(warm.coef) - coef).max() < 1e-4
  assert np.abs(np.asarray(cold.coef) - coef).max() > 1e-4


def test_warm_started_session_stays_on_the_optimum():
  """Refits along a session of near-collinear examples, each warm-started
  from the last: the first negative after a run of positives sent undamped
  Newton into an oscillating intercept; the line search must prevent it."""
  num_slots, dim, C = 50, 128, 0.3
  rng = np.random.default_rng(0)
  centre = rng.normal(size=dim)
  centre /= np.linalg.norm(centre)
  x = rng.normal(size=(num_slots, dim)) * 0.08 + centre * rng.normal(size=(num_slots, 1))
  x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
  label = (rng.random(num_slots) < 1 / (1 + np.exp(-6 * x @ centre))).astype(np.float32)
  label[:2] = [1, 0]
  base = rng.uniform(0.3, 3, num_slots)
  refit = jax.jit(lambda w, previous: logreg.fit(x, label, w, C=C, init=previous))
  previous = logreg.LogRegFit(None, jnp.zeros(()), jnp.zeros(num_slots))
  for used in range(2, 14):
    age = used - 1 - np.arange(num_slots)
    weight = np.where(age >= 0, base * 0.85 ** np.maximum(age, 0), 0.0).astype(np.float32)
    previous = refit(weight, previous)
    coef, intercept = _sklearn(x, label, weight, C)
    np.testing.assert_allclose(previous.coef, coef, atol=1e-4, err_msg=f"event {used}")
    np.testing.assert_allclose(previous.intercept, intercept, atol=1e-4, err_msg=f"event {used}")


def test_warm_start_from_a_one_class_fit_recovers():
  """Five positives (the optimum's intercept is at infinity, and grows at
  every refit), then the first negatives: the refit must still converge."""
  x, _, weight = _problem(17, 12, 32, zero_fraction=0.0)
  label = np.array([1, 1, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1], np.float32)
  previous = None
  for used in range(1, 13):
    partial = np.where(np.arange(12) < used, weight, 0.0).astype(np.float32)
    previous = logreg.fit(x, label, partial, C=2.0, init=previous)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in previous)
    if used >= 6:
      coef, intercept = _sklearn(x, label, partial, 2.0)
      np.testing.assert_allclose(previous.coef, coef, atol=1e-4, err_msg=f"event {used}")
      np.testing.assert_allclose(previous.intercept, intercept, atol=1e-4)


def test_precomputed_gram_and_update_gram():
  x, label, weight = _problem(9, 12, 6)
  gram = jnp.zeros((12, 12))
  buffer = jnp.zeros_like(x)
  for slot in range(12):
    buffer = buffer.at[slot].set(x[slot])
    gram = logreg.update_gram(gram, buffer, slot)
  np.testing.assert_allclose(gram, x @ x.T, atol=1e-6)
  with_gram = logreg.fit(x, label, weight, gram=gram)
  without = logreg.fit(x, label, weight)
  np.testing.assert_allclose(with_gram.coef, without.coef, atol=1e-6)


def test_degenerate_histories_are_finite_and_rank_sensibly():
  x, label, weight = _problem(13, 10, 8)
  empty = logreg.fit(x, label, np.zeros(10, np.float32))
  assert np.all(np.asarray(empty.coef) == 0) and float(empty.intercept) == 0
  only_positive = logreg.fit(x, np.ones(10, np.float32), weight)
  only_negative = logreg.fit(x, np.zeros(10, np.float32), weight)
  one = logreg.fit(x, label, np.eye(10, dtype=np.float32)[0], C=1.0)
  for fit in (only_positive, only_negative, one):
    assert all(np.all(np.isfinite(np.asarray(v))) for v in fit)
  # One class: candidates near the examples rank above their opposites.
  centroid = weight @ x
  assert float(centroid @ only_positive.coef) > 0 > float(centroid @ only_negative.coef)


def _exact_laplace(fit, x, label, weight, C):
  """Mode and covariance of the Laplace posterior over (w, b), in float64."""
  x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1).astype(np.float64)
  mode = np.concatenate([np.asarray(fit.coef, np.float64), [float(fit.intercept)]])
  p = 1 / (1 + np.exp(-x1 @ mode))
  penalty = np.eye(x1.shape[1])
  penalty[-1, -1] = 0.0
  hessian = penalty + x1.T @ (x1 * (C * weight * p * (1 - p))[:, None])
  return mode, np.linalg.inv(hessian)


@pytest.mark.parametrize("num_examples,dim", [(30, 4), (6, 5)])  # T > d and T < d
def test_laplace_sample_matches_exact_posterior(num_examples, dim):
  C, num_samples = 2.0, 40000
  x, label, weight = _problem(21 + dim, num_examples, dim, zero_fraction=0.0)
  fit = logreg.fit(x, label, weight, C=C)
  coef, intercept = jax.jit(lambda k: logreg.laplace_sample(
      k, fit, x, label, weight, C=C, num_samples=num_samples))(jax.random.key(0))
  samples = np.concatenate([np.asarray(coef), np.asarray(intercept)[:, None]], axis=1)
  mode, covariance = _exact_laplace(fit, x, label, weight, C)
  std = np.sqrt(np.diag(covariance))
  # Mean: within 5 Monte Carlo standard errors.
  np.testing.assert_array_less(np.abs(samples.mean(0) - mode), 5 * std / np.sqrt(num_samples))
  # Covariance entries: the standard error of a sample covariance is
  # sqrt((s_ii s_jj + s_ij^2) / S); allow 5 of them.
  empirical = np.cov(samples, rowvar=False)
  tolerance = 5 * np.sqrt((np.outer(std ** 2, std ** 2) + covariance ** 2) / num_samples)
  np.testing.assert_array_less(np.abs(empirical - covariance), tolerance)


def test_laplace_scale_zero_returns_the_mode():
  x, label, weight = _problem(4, 10, 6)
  fit = logreg.fit(x, label, weight)
  coef, intercept = logreg.laplace_sample(jax.random.key(1), fit, x, label, weight,
                                          num_samples=3, scale=0.0)
  np.testing.assert_allclose(coef, np.broadcast_to(fit.coef, (3, 6)), atol=1e-7)
  np.testing.assert_allclose(intercept, np.full(3, float(fit.intercept)), atol=1e-7)


def test_grouped_solve_under_nested_vmap():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(3, 7, 6, 6))
  matrix = np.eye(6) + a @ np.swapaxes(a, -1, -2) / 6
  rhs = rng.normal(size=(3, 7, 6, 2))
  solve = lambda m, r: logreg.spd_solve(m, r, "cholesky")
  got = jax.jit(jax.vmap(jax.vmap(solve)))(matrix.astype(np.float32), rhs.astype(np.float32))
  np.testing.assert_allclose(got, np.linalg.solve(matrix, rhs), atol=1e-4)
  # A matrix shared by the batch (in_axes None) as well.
  got = jax.vmap(solve, in_axes=(None, 0))(matrix[0, 0].astype(np.float32),
                                           rhs[0].astype(np.float32))
  np.testing.assert_allclose(got, np.linalg.solve(matrix[0, 0], rhs[0]), atol=1e-4)


_SHARDED_FIT = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, numpy as np
    from jax.sharding import Mesh, PartitionSpec as P
    from jplaylist.session import logreg
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 50, 16)).astype(np.float32)
    y = (rng.random((2048, 50)) < 0.5).astype(np.float32)
    s = rng.uniform(0, 2, (2048, 50)).astype(np.float32)
    fit = jax.vmap(lambda x, y, s: logreg.fit(x, y, s, num_newton=3).coef)
    mesh = Mesh(np.array(jax.devices()), ("b",))
    sharded = jax.jit(jax.shard_map(fit, mesh=mesh, in_specs=P("b"), out_specs=P("b")))
    for _ in range(30):
      out = jax.block_until_ready(sharded(x, y, s))
    print(float(np.abs(np.asarray(out) - np.asarray(jax.jit(fit)(x, y, s))).max()))
""")


def test_sharded_fit_does_not_deadlock():
  """Two CPU devices solving at once: jaxlib 0.10's batched LAPACK kernels
  wait on the shared thread pool and hang (reproduced with ungrouped solves
  at this size within 30 calls); grouped solves must finish and agree."""
  env = dict(os.environ, PYTHONPATH=REPO_ROOT)
  env.pop("XLA_FLAGS", None)
  result = subprocess.run([sys.executable, "-c", _SHARDED_FIT], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
  assert float(result.stdout.strip().splitlines()[-1]) < 1e-5
