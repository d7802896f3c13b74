"""Greedy + 2-opt against enumerating every order."""

import itertools

import numpy as np
import pytest

from jplaylist.mixing import ordering


def _symmetric(rng, count):
  cost = rng.random((count, count))
  cost = cost + cost.T
  np.fill_diagonal(cost, 0.0)
  return cost


def _optimal_cost(cost):
  """The cheapest open path, by a plain loop over itertools.permutations."""
  return min(sum(cost[a, b] for a, b in zip(order[:-1], order[1:]))
             for order in itertools.permutations(range(len(cost))))


def test_best_order_is_the_cheapest_permutation():
  rng = np.random.default_rng(0)
  for count in (1, 2, 3, 6):
    cost = _symmetric(rng, count)
    order = ordering.best_order(cost)
    assert sorted(order) == list(range(count))
    assert ordering.path_cost(cost, order) == pytest.approx(_optimal_cost(cost))


def test_optimised_order_is_never_below_and_mostly_at_the_optimum():
  rng = np.random.default_rng(1)
  equal, cases = 0, 0
  for count in range(3, 9):
    for kind in range(6):
      if kind % 2:
        points = rng.random((count, 2))
        cost = np.linalg.norm(points[:, None] - points[None], axis=-1)
      else:
        cost = _symmetric(rng, count)
      order = ordering.optimise_order(cost)
      assert sorted(order) == list(range(count))
      found = ordering.path_cost(cost, order)
      optimal = ordering.path_cost(cost, ordering.best_order(cost))
      assert found >= optimal - 1e-9
      equal += found <= optimal + 1e-9
      cases += 1
  assert equal >= 0.9 * cases, f"optimal on {equal} of {cases}"


@pytest.mark.parametrize("count", [5, 8])
def test_optimised_order_is_optimal_on_easy_cases(count):
  rng = np.random.default_rng(count)
  # Tracks on a line (e.g. tempi): the sorted order, either way round.
  position = rng.permutation(count) * 1.0 + rng.random(count) * 0.1
  line = np.abs(position[:, None] - position[None])
  order = ordering.optimise_order(line)
  assert order in (list(np.argsort(position)), list(np.argsort(position)[::-1]))
  # Two tight clusters far apart: one cluster after the other, one crossing.
  cluster = np.arange(count) % 2
  points = np.stack([cluster * 100.0, rng.random(count)], axis=1)
  cost = np.linalg.norm(points[:, None] - points[None], axis=-1)
  order = ordering.optimise_order(cost)
  assert np.sum(np.diff(cluster[order]) != 0) == 1
  assert ordering.path_cost(cost, order) == pytest.approx(
      ordering.path_cost(cost, ordering.best_order(cost)))


def test_two_opt_leaves_no_improving_reversal_and_never_worsens():
  rng = np.random.default_rng(2)
  cost = _symmetric(rng, 12)
  start = list(rng.permutation(12))
  order = ordering.two_opt(cost, start)
  assert sorted(order) == list(range(12))
  value = ordering.path_cost(cost, order)
  assert value <= ordering.path_cost(cost, start)
  for i in range(12):
    for j in range(i + 2, 13):
      moved = order[:i] + order[i:j][::-1] + order[j:]
      assert ordering.path_cost(cost, moved) >= value - 1e-9, (i, j)


def test_asymmetric_costs_are_refused():
  with pytest.raises(ValueError, match="symmetric"):
    ordering.optimise_order(np.array([[0.0, 1.0], [2.0, 0.0]]))


def test_non_finite_costs_are_refused():
  cost = _symmetric(np.random.default_rng(4), 5)
  for bad in (np.inf, np.nan):
    broken = cost.copy()
    broken[1, 3] = broken[3, 1] = bad
    for optimiser in (ordering.optimise_order, ordering.best_order,
                      lambda c: ordering.two_opt(c, list(range(5)))):
      with pytest.raises(ValueError, match=r"finite.*cost\[1, 3\]"):
        optimiser(broken)


def test_random_order_costs_are_costs_of_permutations():
  rng = np.random.default_rng(3)
  cost = _symmetric(rng, 6)
  values = ordering.random_order_costs(cost, 200, np.random.default_rng(0))
  # Every value is the cost of some order of the 6 tracks, the same draws
  # repeat from the same seed, and the draws differ: 200 draws of the 360
  # distinct paths (a path and its reverse cost the same) cover many.
  every = {round(ordering.path_cost(cost, order), 9)
           for order in itertools.permutations(range(6))}
  assert {round(v, 9) for v in values} <= every
  assert len(np.unique(np.round(values, 9))) > 50
  assert values.min() >= ordering.path_cost(cost, ordering.best_order(cost)) - 1e-9
  again = ordering.random_order_costs(cost, 200, np.random.default_rng(0))
  np.testing.assert_array_equal(values, again)
