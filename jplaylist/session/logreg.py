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
the solver jit- and vmap-able. Each step is capped to a trust region on the
logits and then searched (Armijo) over a fixed grid of step sizes, all
evaluated at once in O(T) each, so every step descends; near the optimum the
full step is taken and convergence stays quadratic.

The T x T solves go to LAPACK in groups of LAPACK_GROUP sessions under vmap
(see there: larger batches can deadlock jaxlib 0.10 on CPU).

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
# Step sizes tried along each Newton direction (all at once: the logits are
# linear in the step, so each costs O(T)). Undamped Newton on the logistic
# loss can oscillate far from the optimum, e.g. warm-started after a first
# negative example; near it the full step wins and convergence is quadratic.
LINE_SEARCH_STEPS = (1.0, 0.5, 0.25, 0.125, 0.03, 0.01)
# Trust region: the largest change of any logit in one step. Where the
# curvature vanishes (one class only, or a warm start from such a fit) the
# Newton step in the intercept is unbounded.
MAX_LOGIT_STEP = 8.0
# A warm start's intercept is clipped to this: with one class the optimum is
# at infinity and the intercept grows every event, which would cost the
# event that brings the second class many capped steps to walk back.
MAX_WARM_INTERCEPT = 10.0
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


# LAPACK calls see at most this many matrices at once. jaxlib 0.10's CPU
# LAPACK kernels spread larger batches over XLA's intra-op thread pool and
# block a pool thread until the pieces finish; two such calls at once (two
# devices, or two independent solves in one program) on a 2-core pool wait on
# each other for ever. Measured: batches of 4 50x50 matrices never took that
# path, 8 did; grouping costs nothing on one device (6.9 vs 6.2 us/session).
LAPACK_GROUP = 4


def _cholesky_solve(matrix, rhs):
  """matrix^-1 rhs for SPD matrix [..., T, T], rhs [..., T, k] (LAPACK)."""
  factor = jnp.linalg.cholesky(matrix)
  y = lax.linalg.triangular_solve(factor, rhs, left_side=True, lower=True)
  return lax.linalg.triangular_solve(factor, y, left_side=True, lower=True,
                                     transpose_a=True)


@jax.custom_batching.custom_vmap
def _grouped_solve(matrix, rhs):
  return _cholesky_solve(matrix, rhs)


@_grouped_solve.def_vmap
def _grouped_solve_vmap(axis_size, in_batched, matrix, rhs):
  """Under vmap: lax.map over groups of LAPACK_GROUP problems."""
  matrix_batched, rhs_batched = in_batched
  if not matrix_batched:
    matrix = jnp.broadcast_to(matrix, (axis_size,) + matrix.shape)
  if not rhs_batched:
    rhs = jnp.broadcast_to(rhs, (axis_size,) + rhs.shape)
  group = min(LAPACK_GROUP, axis_size)
  num_groups = -(-axis_size // group)
  pad = num_groups * group - axis_size
  if pad:  # Identity systems fill the last group.
    eye = jnp.broadcast_to(jnp.eye(matrix.shape[-1], dtype=matrix.dtype),
                           (pad,) + matrix.shape[1:])
    matrix = jnp.concatenate([matrix, eye])
    rhs = jnp.concatenate([rhs, jnp.zeros((pad,) + rhs.shape[1:], rhs.dtype)])
  split = lambda a: a.reshape((num_groups, group) + a.shape[1:])
  # Each group goes through _grouped_solve again, so an outer vmap (a sweep
  # over hyper-parameters) lands in this rule too instead of batching LAPACK.
  out = lax.map(lambda mr: _solve_group(*mr), (split(matrix), split(rhs)))
  return out.reshape((num_groups * group,) + out.shape[2:])[:axis_size], True


@jax.custom_batching.custom_vmap
def _solve_group(matrix, rhs):
  """One group [g, T, T]: a single LAPACK call of batch g."""
  return _cholesky_solve(matrix, rhs)


@_solve_group.def_vmap
def _solve_group_vmap(axis_size, in_batched, matrix, rhs):
  # An outer vmap reached a group: regroup its [outer, g] problems.
  if not in_batched[0]:
    matrix = jnp.broadcast_to(matrix, (axis_size,) + matrix.shape)
  if not in_batched[1]:
    rhs = jnp.broadcast_to(rhs, (axis_size,) + rhs.shape)
  flat = lambda a: a.reshape((-1,) + a.shape[2:])
  out = jax.vmap(_grouped_solve)(flat(matrix), flat(rhs))
  return out.reshape((axis_size, -1) + out.shape[1:]), True


def spd_solve(matrix, rhs, solver: str = "cholesky"):
  """matrix^-1 rhs for one SPD matrix [T, T] and rhs [T, k]; vmap freely.

  "cholesky" (default) sends vmapped batches to LAPACK in groups of
  LAPACK_GROUP, so it is safe on several CPU devices at once; use it instead
  of jnp.linalg.cholesky/solve in code that runs sharded.
  """
  if solver == "cholesky":
    return _grouped_solve(matrix, rhs)
  if solver == "cholesky_ungrouped":
    return _cholesky_solve(matrix, rhs)
  if solver == "solve":
    return jnp.linalg.solve(matrix, rhs)
  raise ValueError(f"solver must be 'cholesky', 'cholesky_ungrouped' or "
                   f"'solve', got {solver!r}")


def _curvature(gram, alpha, intercept, label, scaled_weight):
  z = gram @ alpha + intercept
  p = jax.nn.sigmoid(z)
  residual = scaled_weight * (p - label)          # dLoss/dz
  curvature = scaled_weight * p * (1.0 - p)       # d2Loss/dz2
  return z, residual, curvature


def _newton_step(gram, label, scaled_weight, alpha, intercept, solver):
  """One Newton step of the dual with a line search; returns (alpha, intercept)."""
  t = gram.shape[0]
  logit, residual, curvature = _curvature(gram, alpha, intercept, label, scaled_weight)
  root = jnp.sqrt(curvature)
  system = jnp.eye(t, dtype=gram.dtype) + root[:, None] * gram * root[None, :]
  a = alpha + residual
  rhs = jnp.stack([root * (gram @ a), root], axis=1)       # [T, 2]
  solved = spd_solve(system, rhs, solver)
  m_a = a - root * solved[:, 0]                             # M a
  m_d1 = root * solved[:, 1]                                # M D 1
  schur = jnp.maximum(jnp.sum(m_d1), _TINY)
  d_intercept = (jnp.sum(alpha) - jnp.sum(m_a)) / schur
  delta = -m_a - d_intercept * m_d1
  k_delta = gram @ delta
  d_logit = k_delta + d_intercept
  scale = jnp.minimum(1.0, MAX_LOGIT_STEP / (jnp.max(jnp.abs(d_logit)) + _TINY))
  delta, d_intercept, k_delta, d_logit = (scale * v for v in (delta, d_intercept, k_delta,
                                                             d_logit))
  # Armijo backtracking over a fixed grid, every step at once. The change of
  # the objective is computed as a difference (not f(s) - f(0), which float32
  # cannot resolve near the optimum, where it must accept the full step):
  # with w = X^T alpha, ||w||^2 = alpha K alpha is quadratic in the step.
  steps = jnp.asarray(LINE_SEARCH_STEPS, jnp.float32)                   # [S]
  change = steps[:, None] * d_logit[None, :]                             # [S, T]
  data = jnp.sum(scaled_weight * (_softplus_change(logit, change) - label * change),
                 axis=1)
  penalty = steps * (alpha @ k_delta) + 0.5 * steps ** 2 * (delta @ k_delta)
  slope = (alpha + residual) @ k_delta + jnp.sum(residual) * d_intercept
  accepted = penalty + data <= 1e-4 * steps * slope
  # The largest accepted step; none (stay) when rounding rejects them all.
  step = jnp.where(jnp.any(accepted), steps[jnp.argmax(accepted)], 0.0)
  return alpha + step * delta, intercept + step * d_intercept


def _softplus_change(z, change):
  """softplus(z + change) - softplus(z) = log1p(sigmoid(z) expm1(change)).

  Accurate for small changes, where the plain difference cancels; the trust
  region keeps |change| <= MAX_LOGIT_STEP, so expm1 cannot overflow.
  """
  return jnp.log1p(jax.nn.sigmoid(z) * jnp.expm1(jnp.minimum(change, 30.0)))


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
    class only the intercept grows with the iterations (the optimum is at
    infinity) but stays finite, and coef still points at the examples.
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
    alpha = init.alpha
    intercept = jnp.clip(jnp.asarray(init.intercept, jnp.float32), -MAX_WARM_INTERCEPT,
                         MAX_WARM_INTERCEPT)

  # Zero-weight slots get no Newton update (delta_i = -alpha_i there), so
  # starting them at 0 keeps them at 0; a warm start may carry stale values.
  alpha = jnp.where(scaled_weight > 0, alpha, 0.0)
  # A Python loop (num_newton is small and static) rather than fori_loop: its
  # carry needs no care about types inside shard_map.
  for _ in range(num_newton):
    alpha, intercept = _newton_step(gram, label, scaled_weight, alpha, intercept,
                                    solver)
  return LogRegFit(coef=alpha @ x, intercept=intercept, alpha=alpha)


def update_gram(gram, x, slot):
  """The Gram matrix after example `slot` of x was (re)written: O(T d).

  Args:
    gram: [T, T] x @ x.T before the write (zeros for an empty history).
    x: [T, d] examples after the write.
    slot: [] int32 the written slot.

  Returns:
    [T, T] x @ x.T.
  """
  row = x @ x[slot]
  return gram.at[slot, :].set(row).at[:, slot].set(row)


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
  key_w, key_e, key_b = jax.random.split(rng, 3)
  w0 = jax.random.normal(key_w, (num_samples, dim), jnp.float32)
  noise = jax.random.normal(key_e, (num_samples, t), jnp.float32)
  rhs = (w0 @ x.T) @ phi_left.T + noise           # [S, T] Phi w0 + e
  solved = spd_solve(system, rhs.T, "cholesky").T
  w = w0 - (solved @ phi_left) @ x                # [S, d]
  b_mean = -(w @ x.T) @ curvature / total
  b = b_mean + jax.random.normal(key_b, (num_samples,), jnp.float32) / jnp.sqrt(total)
  scale = jnp.asarray(scale, jnp.float32)
  return fit_.coef + scale * w, fit_.intercept + scale * b
