"""Travel through an embedding space: smooth playlists between two tracks, and
playlists around samples of a prior (issue 14, item 4).

`path_playlist(embeddings, start, end, length)` walks the straight line from
track A's embedding to track B's in `length - 1` equal steps and, at each
point, takes the nearest library track not yet in the playlist (A first, B
last): a playlist that moves gradually from A to B. `prior_playlist` does
the same around a random walk... no: around independent samples of the
embedding's prior N(0, I), each answered by its nearest unused track, for new
material drawn from the space itself.

`smoothness` measures a playlist by its step-to-step distances against the
same tracks in random orders: a path whose consecutive tracks are closer
than shuffled ones is smooth.
"""

from __future__ import annotations

import numpy as np


def squared_distances(points: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
  """[P, N] squared Euclidean distances (clipped at 0 against rounding)."""
  return np.maximum(np.sum(points ** 2, 1)[:, None] + np.sum(embeddings ** 2, 1)[None, :]
                    - 2.0 * points @ embeddings.T, 0.0)


def nearest_unused(points: np.ndarray, embeddings: np.ndarray,
                   used: set[int] | None = None) -> list[int]:
  """For each point in turn, the nearest track not already chosen (or in `used`)."""
  used = set() if used is None else set(used)
  if len(points) > len(embeddings) - len(used):
    raise ValueError(f"{len(points)} tracks asked of a library with "
                     f"{len(embeddings) - len(used)} left")
  distances = squared_distances(np.asarray(points, np.float64),
                                 np.asarray(embeddings, np.float64))
  chosen = []
  for row in distances:
    order = np.argsort(row, kind="stable")
    pick = next(int(i) for i in order if int(i) not in used)
    used.add(pick)
    chosen.append(pick)
  return chosen


def path_playlist(embeddings: np.ndarray, start: int, end: int, length: int) -> list[int]:
  """`length` distinct tracks from `start` to `end` along the straight line
  between their embeddings (both ends included).

  Raises:
    ValueError: start equals end, a bad index, or length outside
      [2, number of tracks].
  """
  n = len(embeddings)
  if not (0 <= start < n and 0 <= end < n) or start == end:
    raise ValueError(f"start={start}, end={end}: two different tracks of {n} are needed")
  if not 2 <= length <= n:
    raise ValueError(f"length={length}: between 2 and the library's {n} tracks")
  t = np.linspace(0.0, 1.0, length)[1:-1, None]
  line = (1.0 - t) * embeddings[start][None, :] + t * embeddings[end][None, :]
  return [start] + nearest_unused(line, embeddings, {start, end}) + [end]


def prior_playlist(embeddings: np.ndarray, length: int, rng: np.random.Generator,
                   scale: float = 1.0) -> tuple[list[int], np.ndarray]:
  """`length` tracks answering samples of N(0, scale^2 I): (tracks, samples)."""
  samples = scale * rng.standard_normal((length, embeddings.shape[1]))
  return nearest_unused(samples, embeddings), samples


def step_distances(embeddings: np.ndarray, playlist: list[int]) -> np.ndarray:
  """Euclidean distances between consecutive tracks of a playlist."""
  points = np.asarray(embeddings, np.float64)[playlist]
  return np.linalg.norm(np.diff(points, axis=0), axis=1)


def smoothness(embeddings: np.ndarray, playlist: list[int], rng: np.random.Generator,
               shuffles: int = 100) -> dict[str, float]:
  """Mean step distance of the playlist and of random orders of its tracks.

  The random orders keep the two ends in place (a shuffled trip from A to B),
  so both walks cover the same tracks between the same ends.
  """
  path = float(step_distances(embeddings, playlist).mean())
  inner = list(playlist[1:-1])
  shuffled = []
  for _ in range(shuffles):
    order = [playlist[0]] + list(rng.permutation(inner)) + [playlist[-1]]
    shuffled.append(step_distances(embeddings, order).mean())
  return {"path": path, "random_order": float(np.mean(shuffled)),
          "ratio": path / float(np.mean(shuffled)),
          "share_of_orders_rougher": float(np.mean(np.array(shuffled) > path))}
