"""ALS against the `implicit` library and against the normal equations solved directly."""

import numpy as np
import pytest
import scipy.sparse
import threadpoolctl

from jplaylist.playlists import als

# implicit, the reference, is pinned in requirements-test.txt: missing, it is
# an install defect, not a skip.
from implicit.cpu import als as implicit_als  # pylint: disable=g-bad-import-order


def _problem(seed=0, num_users=40, num_items=25, density=0.2):
  rng = np.random.default_rng(seed)
  plays = (rng.random((num_users, num_items)) < density) * rng.integers(1, 4, (num_users,
                                                                               num_items))
  users, items = np.nonzero(plays)
  return plays, users, items


def _dense_user_step(conf_dense, observed, other, regularization):
  """Hu et al.'s closed form for x_u with the full confidence matrix: no speed-up."""
  factors = other.shape[1]
  out = np.zeros((conf_dense.shape[0], factors))
  for u in range(conf_dense.shape[0]):
    c = np.where(observed[u], conf_dense[u], 1.0)
    matrix = other.T @ (c[:, None] * other) + regularization * np.eye(factors)
    out[u] = np.linalg.solve(matrix, other.T @ (c * observed[u]))
  return out


def test_matches_implicit_alternating_least_squares():
  plays, users, items = _problem()
  conf = als.confidence(plays[users, items], alpha=2.0)
  init_rng = np.random.default_rng(3)
  start = (als.initial_factors(40, 6, init_rng), als.initial_factors(25, 6, init_rng))
  ours = als.fit(users, items, conf, num_users=40, num_items=25, factors=6,
                 regularization=0.1, iterations=5, init=start)
  # implicit reads its matrix as the confidences c_ui themselves (alpha=1);
  # use_cg=False: its exact Cholesky solve. One BLAS thread, as it asks.
  with threadpoolctl.threadpool_limits(1, "blas"):
    reference = implicit_als.AlternatingLeastSquares(
        factors=6, regularization=0.1, alpha=1.0, use_cg=False, iterations=5, num_threads=1)
    reference.user_factors, reference.item_factors = start[0].copy(), start[1].copy()
    reference.fit(scipy.sparse.csr_matrix((conf, (users, items)), shape=(40, 25)),
                  show_progress=False)
  assert np.abs(ours.item_factors).max() > 0.1  # moved well away from the start
  np.testing.assert_allclose(ours.user_factors, reference.user_factors, atol=5e-5)
  np.testing.assert_allclose(ours.item_factors, reference.item_factors, atol=5e-5)


def test_one_sweep_solves_the_dense_normal_equations():
  plays, users, items = _problem(seed=1, num_users=12, num_items=9, density=0.4)
  conf = als.confidence(plays[users, items], alpha=5.0)
  conf_dense = np.zeros(plays.shape)
  conf_dense[users, items] = conf
  observed = plays > 0
  rng = np.random.default_rng(0)
  start = (rng.normal(size=(12, 4)).astype(np.float32), rng.normal(size=(9, 4)).astype(np.float32))
  ours = als.fit(users, items, conf, num_users=12, num_items=9, factors=4,
                 regularization=0.3, iterations=1, init=start)
  user_factors = _dense_user_step(conf_dense, observed, start[1].astype(np.float64), 0.3)
  item_factors = _dense_user_step(conf_dense.T, observed.T, user_factors, 0.3)
  np.testing.assert_allclose(ours.user_factors, user_factors, rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(ours.item_factors, item_factors, rtol=1e-3, atol=1e-4)


def test_fold_in_solves_the_user_equation():
  rng = np.random.default_rng(2)
  item_factors = rng.normal(size=(15, 5)).astype(np.float32)
  contexts = [np.array([3, 7, 7, 1]), np.array([], np.int64), np.array([14])]
  users = als.fold_in(item_factors, contexts, regularization=0.5, alpha=2.0)
  for context, user in zip(contexts, users):
    plays = np.bincount(context, minlength=15)
    expected = _dense_user_step((1 + 2.0 * plays)[None], (plays > 0)[None],
                                item_factors.astype(np.float64), 0.5)[0]
    np.testing.assert_allclose(user, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(users[1], 0.0)


def test_padded_lists_hold_every_entry_once():
  rows, cols = np.array([2, 0, 2, 2, 1]), np.array([5, 1, 3, 4, 0])
  values = np.arange(5, dtype=np.float32) + 1
  index, value, mask = als.padded_lists(rows, cols, values, 4)
  assert index.shape == (4, 3) and mask.sum() == 5 and not mask[3].any()
  got = {(r, index[r, s], value[r, s]) for r, s in zip(*np.nonzero(mask))}
  assert got == set(zip(rows.tolist(), cols.tolist(), values.tolist()))


def test_counts_matrix_rejects_items_outside_the_universe():
  with pytest.raises(ValueError, match="sequence 1"):
    als.counts_matrix([np.array([0, 1]), np.array([5])], 3)


@pytest.mark.parametrize("change, field", [
    (dict(alpha=-1.0), "alpha"), (dict(factors=0), "factors"), (dict(iterations=0), "iterations"),
    (dict(regularization=-0.1), "regularization"), (dict(num_users=30), "users"),
    (dict(num_items=20), "items")])
def test_fit_rejects_bad_arguments_by_name(change, field):
  plays, users, items = _problem()
  arguments = dict(num_users=40, num_items=25, factors=4, iterations=1, alpha=1.0)
  with pytest.raises(ValueError, match=field):
    als.fit(users, items, als.confidence(plays[users, items], 1.0), **{**arguments, **change})


def test_fold_in_and_confidence_reject_negative_alpha_and_regularization():
  factors = np.ones((5, 2), np.float32)
  with pytest.raises(ValueError, match="alpha=-0.5"):
    als.fold_in(factors, [np.array([1])], regularization=0.1, alpha=-0.5)
  with pytest.raises(ValueError, match="regularization=-1"):
    als.fold_in(factors, [np.array([1])], regularization=-1.0, alpha=1.0)
  with pytest.raises(ValueError, match="alpha"):
    als.fit_sequences([np.array([0, 1])], 5, alpha=-2.0)
