"""Synthetic listening sequences with planted structure, shared by the playlist tests."""

import numpy as np


def planted_sequences(*, num_clusters: int = 40, cluster_size: int = 15,
                      num_sequences: int = 1500, min_length: int = 6, max_length: int = 12,
                      noise: float = 0.2, seed: int = 0) -> tuple[list[list[str]], np.ndarray]:
  """Sequences that each stay in one cluster of tracks, with noise.

  Track t belongs to cluster t // cluster_size. A sequence picks a cluster and
  draws its tracks from it without replacement by a Zipf-like popularity
  (so subsampling and the negative table matter); each item is replaced with
  probability `noise` by a track drawn uniformly from the whole library.

  Returns:
    (sequences of ids "t<row>", cluster [N] of each track row).
  """
  rng = np.random.default_rng(seed)
  num_tracks = num_clusters * cluster_size
  popularity = 1.0 / (1.0 + rng.permutation(num_tracks) % cluster_size)
  sequences = []
  for _ in range(num_sequences):
    cluster = rng.integers(num_clusters)
    members = np.arange(cluster * cluster_size, (cluster + 1) * cluster_size)
    length = rng.integers(min_length, max_length + 1)
    chosen = rng.choice(members, length, replace=False,
                        p=popularity[members] / popularity[members].sum())
    swap = rng.random(length) < noise
    chosen[swap] = rng.integers(0, num_tracks, swap.sum())
    sequences.append([f"t{t}" for t in chosen])
  return sequences, np.arange(num_tracks) // cluster_size
