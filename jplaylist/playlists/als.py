"""Matrix factorisation for implicit feedback by alternating least squares, in JAX.

Hu, Koren and Volinsky, "Collaborative Filtering for Implicit Feedback
Datasets" (ICDM 2008). Users (here: training sequences or playlists) u and
items (tracks) i; r_ui how often u played i. Preference p_ui = [r_ui > 0],
confidence c_ui = 1 + alpha r_ui (the paper's linear confidence;
not its log variant 1 + alpha log(1 + r_ui / eps); 1 where r_ui = 0). The
factors minimise the paper's weighted cost

  sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (sum |x_u|^2 + sum |y_i|^2),

and with Y fixed each x_u solves the paper's closed form
x_u = (Y^T C^u Y + lambda I)^-1 Y^T C^u p(u), written with its speed-up
Y^T C^u Y = Y^T Y + Y^T (C^u - I) Y (only the observed entries cost):

  (Y^T Y + lambda I + sum_{i: r_ui > 0} (c_ui - 1) y_i y_i^T) x_u = sum_{i: r_ui > 0} c_ui y_i,

and symmetrically for y_i. Each side holds, per row, its observed entries in
a padded list (cost O(rows * L * F^2) per sweep, L the longest list), and the
F x F systems go to `jplaylist.session.logreg.spd_solve`, which hands LAPACK
bounded groups: batched CPU LAPACK calls can deadlock jaxlib on several
devices. The `implicit` library's AlternatingLeastSquares solves the same
equations when given the confidences c_ui as its matrix with alpha=1
(tests/playlists/test_als.py checks they agree).

`fold_in` gives a new user (a held-out sequence) its factor from the item
factors alone, the same x_u equation: how MF ranks next tracks.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jplaylist.session.logreg import spd_solve


@dataclasses.dataclass
class Factors:
  """A fitted factorisation: user_factors [U, F], item_factors [I, F]."""
  user_factors: np.ndarray
  item_factors: np.ndarray
  regularization: float
  alpha: float


def _check_at_least(name: str, value, lowest: float, *, integer: bool = False):
  """ValueError naming `name` unless value >= lowest (finite; an int if `integer`)."""
  if integer and not isinstance(value, (int, np.integer)):
    raise ValueError(f"{name}={value!r}: expected an integer >= {int(lowest)}")
  if not np.isfinite(value) or value < lowest:
    raise ValueError(f"{name}={value!r}: expected a finite number >= {lowest:g}")


def counts_matrix(sequences: Sequence[np.ndarray], num_items: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(user, item, count) triplets of r_ui: user u = sequence u, items its rows.

  Args:
    sequences: U arrays of item indices in [0, num_items).
  """
  users, items, counts = [], [], []
  for user, seq in enumerate(sequences):
    seq = np.asarray(seq, np.int64)
    if seq.size and (seq.min() < 0 or seq.max() >= num_items):
      raise ValueError(f"sequence {user}: item indices outside [0, {num_items})")
    unique, count = np.unique(seq, return_counts=True)
    users.append(np.full(len(unique), user))
    items.append(unique)
    counts.append(count)
  cat = lambda xs, dtype: np.concatenate(xs).astype(dtype) if xs else np.zeros(0, dtype)
  return cat(users, np.int32), cat(items, np.int32), cat(counts, np.float32)


def confidence(counts, alpha: float) -> np.ndarray:
  """c = 1 + alpha r (Hu et al.'s linear confidence) for the observed entries."""
  _check_at_least("alpha", alpha, 0.0)
  return (1.0 + alpha * np.asarray(counts, np.float32)).astype(np.float32)


def padded_lists(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, num_rows: int, *,
                 power_of_two: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per row its (column, value) entries, padded: index [R, L], value [R, L], mask [R, L].

  L is the longest row, or with `power_of_two` the next power of two (so
  batches of varying lengths share a few compiled shapes).
  """
  rows, cols, values = np.asarray(rows), np.asarray(cols), np.asarray(values, np.float32)
  lengths = np.bincount(rows, minlength=num_rows)
  width = max(int(lengths.max(initial=0)), 1)
  if power_of_two:
    width = 1 << (width - 1).bit_length()
  order = np.argsort(rows, kind="stable")
  slot = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
  index = np.zeros((num_rows, width), np.int32)
  value = np.zeros((num_rows, width), np.float32)
  mask = np.zeros((num_rows, width), bool)
  index[rows[order], slot] = cols[order]
  value[rows[order], slot] = values[order]
  mask[rows[order], slot] = True
  return index, value, mask


@functools.partial(jax.jit, static_argnames=("block",))
def solve_side(other, index, conf, mask, regularization, *, block: int = 128):
  """Least-squares factors of R rows given the other side's factors.

  Args:
    other: [M, F] the fixed factors (items when solving users).
    index: [R, L] int32 observed columns of each row, padded.
    conf: [R, L] float32 their confidences c.
    mask: [R, L] bool real entries.
    regularization: lambda.
    block: rows per lax.map step (bounds the [block, L, F] gather).

  Returns:
    [R, F] the solved factors.
  """
  num_factors = other.shape[1]
  gram = other.T @ other + regularization * jnp.eye(num_factors, dtype=other.dtype)

  def one(args):
    idx, c, m = args
    y = other[idx]                                        # [L, F]
    extra = jnp.where(m, c - 1.0, 0.0)
    matrix = gram + (y * extra[:, None]).T @ y
    rhs = jnp.where(m, c, 0.0) @ y
    return spd_solve(matrix, rhs[:, None])[:, 0]

  return jax.lax.map(one, (index, conf, mask), batch_size=min(block, index.shape[0]))


def initial_factors(num_rows: int, num_factors: int, rng: np.random.Generator) -> np.ndarray:
  """U[0, 0.01) start, as `implicit` draws it."""
  return (rng.random((num_rows, num_factors), dtype=np.float32) * 0.01).astype(np.float32)


def fit(users: np.ndarray, items: np.ndarray, conf: np.ndarray, *, num_users: int,
        num_items: int, factors: int = 32, regularization: float = 0.01,
        iterations: int = 15, seed: int = 0, alpha: float = float("nan"),
        init: tuple[np.ndarray, np.ndarray] | None = None) -> Factors:
  """ALS on the observed entries (users[k], items[k]) with confidences conf[k].

  Each iteration solves every user, then every item (implicit's order).

  Args:
    users, items: [nnz] int the observed entries.
    conf: [nnz] float32 c_ui (`confidence`), > 0.
    factors: F.
    regularization: lambda.
    iterations: full sweeps.
    seed: the initial factors' draw (ignored with `init`).
    alpha: recorded with the result (fold-in uses it).
    init: (user_factors [U, F], item_factors [I, F]) to start from.
  """
  _check_at_least("num_users", num_users, 1, integer=True)
  _check_at_least("num_items", num_items, 1, integer=True)
  _check_at_least("factors", factors, 1, integer=True)
  _check_at_least("iterations", iterations, 1, integer=True)
  _check_at_least("regularization", regularization, 0.0)
  if not np.isnan(alpha):  # NaN: not recorded
    _check_at_least("alpha", alpha, 0.0)
  users, items = np.asarray(users), np.asarray(items)
  conf = np.asarray(conf, np.float32)
  if not users.shape == items.shape == conf.shape or users.ndim != 1:
    raise ValueError(f"users {users.shape}, items {items.shape} and conf {conf.shape}: "
                     "expected equal [nnz] shapes")
  for name, ids, size in (("users", users, num_users), ("items", items, num_items)):
    if ids.size and (ids.min() < 0 or ids.max() >= size):
      raise ValueError(f"{name} ids span [{ids.min()}, {ids.max()}]: expected within "
                       f"[0, num_{name}={size})")
  if np.any(~(conf > 0)):
    raise ValueError("conf: confidences must be > 0 for observed entries")
  if init is not None and (np.shape(init[0]) != (num_users, factors)
                           or np.shape(init[1]) != (num_items, factors)):
    raise ValueError(f"init shapes {np.shape(init[0])}, {np.shape(init[1])}: expected "
                     f"({num_users}, {factors}) and ({num_items}, {factors})")
  if init is None:
    rng = np.random.default_rng(seed)
    init = (initial_factors(num_users, factors, rng), initial_factors(num_items, factors, rng))
  user_factors, item_factors = (jnp.asarray(f, jnp.float32) for f in init)
  by_user = tuple(map(jnp.asarray, padded_lists(users, items, conf, num_users)))
  by_item = tuple(map(jnp.asarray, padded_lists(items, users, conf, num_items)))
  reg = jnp.float32(regularization)
  for _ in range(iterations):
    user_factors = solve_side(item_factors, *by_user, reg)
    item_factors = solve_side(user_factors, *by_item, reg)
  return Factors(user_factors=np.asarray(user_factors), item_factors=np.asarray(item_factors),
                 regularization=float(regularization), alpha=float(alpha))


def fit_sequences(sequences: Sequence[np.ndarray], num_items: int, *, alpha: float = 1.0,
                  **kwargs) -> Factors:
  """ALS with one user per sequence, c = 1 + alpha * (plays of the item in it)."""
  users, items, counts = counts_matrix(sequences, num_items)
  return fit(users, items, confidence(counts, alpha), num_users=len(sequences),
             num_items=num_items, alpha=alpha, **kwargs)


def fold_in(item_factors: np.ndarray, contexts: Sequence[np.ndarray], *,
            regularization: float, alpha: float) -> np.ndarray:
  """[Q, F] user factors of new users from their items alone (the x_u equation).

  Args:
    item_factors: [I, F] fitted item factors.
    contexts: Q arrays of item indices (repeats count as plays); an empty one
      gives x = 0.
    regularization: lambda, >= 0.
    alpha: c = 1 + alpha * plays, >= 0.
  """
  _check_at_least("regularization", regularization, 0.0)
  _check_at_least("alpha", alpha, 0.0)
  users, items, counts = counts_matrix(contexts, item_factors.shape[0])
  index, conf, mask = padded_lists(users, items, confidence(counts, alpha), len(contexts),
                                   power_of_two=True)
  return np.asarray(solve_side(jnp.asarray(item_factors, jnp.float32), jnp.asarray(index),
                               jnp.asarray(conf), jnp.asarray(mask),
                               jnp.float32(regularization)))
