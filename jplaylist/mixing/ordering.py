"""Orders tracks for smooth transitions: greedy nearest neighbour, then 2-opt.

A DJ set is an open path through the tracks (it starts and ends anywhere)
whose cost is the sum of its transition costs: the travelling-salesman path
problem. The optimiser, documented in one place:

1. Greedy nearest neighbour from every start track: repeatedly go to the
   cheapest track not yet played.
2. The `restarts` cheapest greedy paths are each improved by best-improvement
   2-opt until no move helps: a move reverses a stretch of the path, which
   replaces two transitions by two others. An open path is handled as a
   cycle through a dummy track that costs 0 to reach from and to every
   track, so a move may also reverse the path's head or tail (that is, pick
   a new first or last track). 2-opt needs a symmetric cost (a reversed
   stretch keeps its inner cost), which `transitions.cost_terms` gives.
3. The cheapest result wins.

Costs must be finite: an infinite cost makes a move's gain inf - inf = NaN,
and 2-opt would never stop, so `_check` refuses them.

For N tracks, step 1 costs O(N^3) and each 2-opt move O(N^2) in numpy; a set
of some hundred tracks takes seconds. `best_order` enumerates every order,
for tests on a handful of tracks.
"""

from __future__ import annotations

import itertools

import numpy as np


def _check(cost: np.ndarray) -> np.ndarray:
  cost = np.asarray(cost, np.float64)
  if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
    raise ValueError(f"cost must be a square matrix, got shape {cost.shape}")
  if not np.all(np.isfinite(cost)):
    # inf - inf is NaN, and a NaN gain never stops 2-opt's loop.
    bad = np.argwhere(~np.isfinite(cost))
    raise ValueError(f"cost must be finite: {len(bad)} entries are not, e.g. "
                     f"cost[{bad[0][0]}, {bad[0][1]}] = {cost[tuple(bad[0])]}")
  if not np.allclose(cost, cost.T):
    raise ValueError("cost must be symmetric: 2-opt reverses stretches of the path")
  return cost


def path_cost(cost: np.ndarray, order) -> float:
  """Sum of the transition costs along `order` (an open path)."""
  order = np.asarray(order, int)
  return float(np.sum(cost[order[:-1], order[1:]]))


def transition_costs(cost: np.ndarray, order) -> np.ndarray:
  """[len(order) - 1] cost of each transition along `order`."""
  order = np.asarray(order, int)
  return np.asarray(cost)[order[:-1], order[1:]]


def greedy_path(cost: np.ndarray, start: int) -> list[int]:
  """Nearest neighbour from `start`; ties go to the lower index."""
  count = len(cost)
  visited = np.zeros(count, bool)
  order = [int(start)]
  visited[start] = True
  for _ in range(count - 1):
    row = np.where(visited, np.inf, cost[order[-1]])
    order.append(int(np.argmin(row)))
    visited[order[-1]] = True
  return order


def two_opt(cost: np.ndarray, order) -> list[int]:
  """Best-improvement 2-opt of an open path (module docstring).

  Args:
    cost: [N, N] symmetric transition costs.
    order: a starting order of all N tracks.

  Returns:
    An order whose cost is at most that of `order`, and that no single 2-opt
    move improves.
  """
  cost = _check(cost)
  count = len(cost)
  if count < 3:
    return list(order)
  # Track `count` is the dummy: the open path is the cycle [dummy] + order.
  extended = np.zeros((count + 1, count + 1))
  extended[:count, :count] = cost
  tour = np.array([count] + list(order))
  size = count + 1
  i_index, j_index = np.triu_indices(size, k=2)
  keep = ~((i_index == 0) & (j_index == size - 1))  # those two edges are adjacent
  i_index, j_index = i_index[keep], j_index[keep]
  while True:
    after = np.roll(tour, -1)
    edge = extended[tour, after]
    # Replacing edges (a_i, b_i) and (a_j, b_j) by (a_i, a_j) and (b_i, b_j).
    delta = (extended[tour[i_index], tour[j_index]] + extended[after[i_index], after[j_index]]
             - edge[i_index] - edge[j_index])
    best = int(np.argmin(delta))
    if delta[best] >= -1e-12:
      break
    i, j = i_index[best], j_index[best]
    tour[i + 1:j + 1] = tour[i + 1:j + 1][::-1]
  start = int(np.flatnonzero(tour == count)[0])
  return [int(t) for t in np.roll(tour, -start)[1:]]


def optimise_order(cost: np.ndarray, restarts: int = 8) -> list[int]:
  """Greedy from every start, 2-opt of the `restarts` best, the cheapest result.

  Args:
    cost: [N, N] symmetric transition costs.
    restarts: how many greedy paths 2-opt improves.

  Returns:
    A permutation of range(N).
  """
  cost = _check(cost)
  if len(cost) == 0:
    return []
  greedy = sorted((greedy_path(cost, start) for start in range(len(cost))),
                  key=lambda order: path_cost(cost, order))
  improved = [two_opt(cost, order) for order in greedy[:max(1, restarts)]]
  return min(improved, key=lambda order: path_cost(cost, order))


def best_order(cost: np.ndarray) -> list[int]:
  """The cheapest open path by enumerating every order (N <= 10)."""
  cost = _check(cost)
  count = len(cost)
  if count > 10:
    raise ValueError(f"{count} tracks are too many to enumerate (at most 10)")
  if count < 2:
    return list(range(count))
  orders = np.array(list(itertools.permutations(range(count))))
  orders = orders[orders[:, 0] < orders[:, -1]]  # a path and its reverse cost the same
  values = cost[orders[:, :-1], orders[:, 1:]].sum(axis=1)
  return [int(t) for t in orders[int(np.argmin(values))]]


def random_order_costs(cost: np.ndarray, num_orders: int, rng: np.random.Generator
                       ) -> np.ndarray:
  """[num_orders] path costs of uniformly random orders (the baseline)."""
  return np.array([path_cost(cost, rng.permutation(len(cost))) for _ in range(num_orders)])
