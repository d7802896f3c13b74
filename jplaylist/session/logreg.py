"""Weighted L2 logistic regression in dual (representer) form, for sessions.

The patent's (WO2024043931A1) per-session classifier is refit from scratch on
the session's examples Z_T after every event. We solve scikit-learn's
objective exactly (to float32 precision):

  min_{w, b}  0.5 ||w||^2 + C sum_i s_i logloss(y_i, x_i . w + b)

with an unpenalised intercept b, so `fit` agrees with
`sklearn.linear_model.LogisticRegression(C=C).fit(X, y, sample_weight=s)`.

Dual form. At the optimum w = -C sum_i s_i (p_i - y_i) x_i = X^T alpha, and
every Newton iterate started in the row space of X stays there, so we keep
alpha [T] instead of w [d]. With K = X X^T, z = K alpha + b, p = sigmoid(z),
r = C s (p - y) and D = diag(C s p (1 - p)), the Newton system for (w, b)

  [I + X^T D X, X^T D 1; 1^T D X, 1^T D 1] [dw; db] = -[X^T (alpha + r); 1^T r]

reduces (Woodbury, dw = X^T delta) to T x T work with the well-conditioned
SPD matrix B = I + D^1/2 K D^1/2 (eigenvalues >= 1):

  M = (I + D K)^-1 = I - D^1/2 B^-1 D^1/2 K
  db = (1^T alpha - 1^T M a) / (1^T M D 1),    a = alpha + r
  delta = -M a - db M D 1,                     M D 1 = D^1/2 B^-1 D^1/2 1.

Each iteration costs one T x T Cholesky, O(T^3), whatever d is; scoring stays
the [N, d] @ [d] product with w = X^T alpha. A fixed number of iterations keeps
the solver jit- and vmap-able; a step cap on the change of the logits guards
the first iterations of undamped Newton, and is inactive near the optimum.

`laplace_sample` draws from the Laplace posterior N((w, b), H^-1) for
Thompson sampling with Matheron's rule in the same T-space: no d x d inverse.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

# Default Newton iterations: enough for 1e-4 parity with scikit-learn from a
# cold start on session-sized problems (tests check it); a warm start from
# the previous event's fit needs fewer.
NUM_NEWTON = 8
# Largest change of any logit in one Newton step (logit units); undamped
# Newton on the logistic loss can overshoot far from the optimum.
MAX_LOGIT_STEP = 8.0
# Floor of the intercept's Schur complement: an empty history has none.
_TINY = 1e-12


class LogRegFit(NamedTuple):
  """A fitted session classifier.

  coef: [d] w = X^T alpha.
  intercept: [] b.
  alpha: [T] dual coefficients (0 on zero-weight slots); warm start for the
    next event's fit (the new example's slot starts at 0).
  """
  coef: jax.Array
  intercept: jax.Array
  alpha: jax.Array


def _spd_solve(matrix, rhs, solver: str):
  """matrix^-1 rhs for SPD [T, T] matrix, rhs [T, k]."""
  if solver == "cholesky":
    factor = jnp.linalg.cholesky(matrix)
    y = lax.linalg.triangular_solve(factor, rhs, left_side=True, lower=True)
    return lax.linalg.triangular_solve(factor, y, left_side=True, lower=True,
                                       transpose_a=True)
  if solver == "solve":
    return jnp.linalg.solve(matrix, rhs)
  raise ValueError(f"solver must be 'cholesky' or 'solve', got {solver!r}")


def _curvature(gram, alpha, intercept, label, scaled_weight):
  z = gram @ alpha + intercept
  p = jax.nn.sigmoid(z)
  residual = scaled_weight * (p - label)          # dLoss/dz
  curvature = scaled_weight * p * (1.0 - p)       # d2Loss/dz2
  return z, residual, curvature


def _newton_step(gram, label, scaled_weight, alpha, intercept, solver):
  """One (capped) Newton step of the dual; returns (alpha, intercept)."""
  t = gram.shape[0]
  _, residual, curvature = _curvature(gram, alpha, intercept, label, scaled_weight)
  root = jnp.sqrt(curvature)
  system = jnp.eye(t, dtype=gram.dtype) + root[:, None] * gram * root[None, :]
  a = alpha + residual
  rhs = jnp.stack([root * (gram @ a), root], axis=1)       # [T, 2]
  solved = _spd_solve(system, rhs, solver)
  m_a = a - root * solved[:, 0]                             # M a
  m_d1 = root * solved[:, 1]                                # M D 1
  schur = jnp.maximum(jnp.sum(m_d1), _TINY)
  d_intercept = (jnp.sum(alpha) - jnp.sum(m_a)) / schur
  delta = -m_a - d_intercept * m_d1
  d_logit = gram @ delta + d_intercept
  step = jnp.minimum(1.0, MAX_LOGIT_STEP / (jnp.max(jnp.abs(d_logit)) + _TINY))
  return alpha + step * delta, intercept + step * d_intercept


def fit(x, label, sample_weight, *, C=1.0, num_newton: int = NUM_NEWTON,
        init: LogRegFit | None = None, gram=None, solver: str = "cholesky") -> LogRegFit:
  """Weighted L2 logistic regression (scikit-learn's objective), dual Newton.

  Args:
    x: [T, d] examples (padding slots may hold anything finite).
    label: [T] {0, 1}.
    sample_weight: [T] >= 0; 0 on padding slots.
    C: [] inverse regularisation strength (may be traced, e.g. swept).
    num_newton: Newton iterations (static).
    init: warm start (its `alpha` and `intercept`), e.g. the previous event's
      fit; None starts at w = 0, b = 0.
    gram: [T, T] optional precomputed x @ x.T (a study can update it one row
      per event instead of recomputing it).
    solver: "cholesky" or "solve" (LU) for the T x T systems.

  Returns:
    LogRegFit. With no weighted example coef = 0, intercept = 0; with one
    class only the intercept grows by about one per iteration (the optimum is
    at infinity) but stays finite, and coef still points at the examples.
  """
  x = jnp.asarray(x, jnp.float32)
  label = jnp.asarray(label, jnp.float32)
  scaled_weight = jnp.asarray(C, jnp.float32) * jnp.asarray(sample_weight, jnp.float32)
  if gram is None:
    gram = x @ x.T
  if init is None:
    alpha = jnp.zeros(label.shape, jnp.float32)
    intercept = jnp.zeros((), jnp.float32)
  else:
    alpha, intercept = init.alpha, jnp.asarray(init.intercept, jnp.float32)

  # A Python loop (num_newton is small and static) rather than fori_loop: its
  # carry needs no care about types inside shard_map.
  for _ in range(num_newton):
    alpha, intercept = _newton_step(gram, label, scaled_weight, alpha, intercept,
                                    solver)
  # Zero-weight slots carry no gradient; their alpha is 0 after one step,
  # but a warm start may hand over stale values: pin them.
  alpha = jnp.where(scaled_weight > 0, alpha, 0.0)
  return LogRegFit(coef=alpha @ x, intercept=intercept, alpha=alpha)


def objective(coef, intercept, x, label, sample_weight, C=1.0):
  """scikit-learn's objective at (coef, intercept); [] float32 (for checks)."""
  z = x @ coef + intercept
  logloss = jnp.logaddexp(0.0, z) - label * z
  return 0.5 * jnp.sum(coef * coef) + C * jnp.sum(sample_weight * logloss)


def decision_function(fit_: LogRegFit, cand) -> jax.Array:
  """[N] logits of candidates [N, d]."""
  return cand @ fit_.coef + fit_.intercept


def laplace_sample(rng, fit_: LogRegFit, x, label, sample_weight, *, C=1.0,
                   num_samples: int = 1, scale=1.0, gram=None):
  """Draws (coef, intercept) from the Laplace posterior N(mode, scale^2 H^-1).

  H is the Hessian of the objective at the fit: [I + X^T D X, X^T D 1;
  1^T D X, 1^T D 1]. Matheron's rule: with w0 ~ N(0, I_d), e ~ N(0, I_T),
  eliminating the intercept by its Schur complement leaves the precision
  I + Phi^T Phi of w, Phi = P D^1/2 X (P projects out D^1/2 1), and

    w = w0 - Phi^T (I + Phi Phi^T)^-1 (Phi w0 + e)  ~  N(0, (I + Phi^T Phi)^-1),
    b | w ~ N(-(1^T D X w) / (1^T D 1), 1 / (1^T D 1)).

  Args:
    rng: PRNG key.
    fit_: the mode (from `fit` on the same data).
    x, label, sample_weight, C, gram: as for `fit`.
    num_samples: static number of draws.
    scale: [] posterior scale (1 = the Laplace posterior; exploration knob).

  Returns:
    coef [S, d], intercept [S] samples.
  """
  x = jnp.asarray(x, jnp.float32)
  t, dim = x.shape
  if gram is None:
    gram = x @ x.T
  scaled_weight = jnp.asarray(C, jnp.float32) * jnp.asarray(sample_weight, jnp.float32)
  _, _, curvature = _curvature(gram, fit_.alpha, fit_.intercept,
                               jnp.asarray(label, jnp.float32), scaled_weight)
  root = jnp.sqrt(curvature)
  total = jnp.maximum(jnp.sum(curvature), _TINY)
  unit = root / jnp.sqrt(total)
  projector = jnp.eye(t, dtype=jnp.float32) - unit[:, None] * unit[None, :]
  phi_left = projector * root[None, :]            # Phi = phi_left @ X
  phi_gram = phi_left @ gram @ phi_left.T         # Phi Phi^T
  system = jnp.eye(t, dtype=jnp.float32) + phi_gram
  factor = jnp.linalg.cholesky(system)
  key_w, key_e, key_b = jax.random.split(rng, 3)
  w0 = jax.random.normal(key_w, (num_samples, dim), jnp.float32)
  noise = jax.random.normal(key_e, (num_samples, t), jnp.float32)
  rhs = (w0 @ x.T) @ phi_left.T + noise           # [S, T] Phi w0 + e
  solved = jax.scipy.linalg.cho_solve((factor, True), rhs.T).T
  w = w0 - (solved @ phi_left) @ x                # [S, d]
  b_mean = -(w @ x.T) @ curvature / total
  b = b_mean + jax.random.normal(key_b, (num_samples,), jnp.float32) / jnp.sqrt(total)
  scale = jnp.asarray(scale, jnp.float32)
  return fit_.coef + scale * w, fit_.intercept + scale * b
