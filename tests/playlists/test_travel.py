"""Travel through an embedding: a path from A to B follows the line between
them, uses each track once and is smoother than random orders."""

import numpy as np
import pytest

from jplaylist.playlists import travel


def test_on_a_line_of_tracks_the_path_is_the_line_in_order():
  embeddings = np.stack([np.linspace(0, 9, 10), np.zeros(10)], 1)
  rng = np.random.default_rng(0)
  embeddings = embeddings[rng.permutation(10)]
  order = np.argsort(embeddings[:, 0])
  playlist = travel.path_playlist(embeddings, int(order[0]), int(order[-1]), 10)
  assert playlist == order.tolist()
  np.testing.assert_allclose(travel.step_distances(embeddings, playlist), 1.0)
  figures = travel.smoothness(embeddings, playlist, rng)
  assert figures["path"] == 1.0 and figures["ratio"] < 1.0
  assert figures["share_of_orders_rougher"] > 0.95


def test_nearest_unused_never_repeats_and_finds_the_nearest():
  rng = np.random.default_rng(1)
  embeddings = rng.normal(size=(30, 4))
  points = rng.normal(size=(10, 4))
  chosen = travel.nearest_unused(points, embeddings, used={0})
  assert len(set(chosen)) == 10 and 0 not in chosen
  # The first point gets its nearest track outright (0 aside).
  d = np.linalg.norm(embeddings - points[0], axis=1)
  d[0] = np.inf
  assert chosen[0] == int(np.argmin(d))


def test_prior_playlist_and_bad_arguments():
  embeddings = np.random.default_rng(2).normal(size=(20, 3))
  tracks, samples = travel.prior_playlist(embeddings, 5, np.random.default_rng(3))
  assert len(set(tracks)) == 5 and samples.shape == (5, 3)
  with pytest.raises(ValueError, match="two different tracks"):
    travel.path_playlist(embeddings, 3, 3, 5)
  with pytest.raises(ValueError, match="length=21"):
    travel.path_playlist(embeddings, 0, 1, 21)
  with pytest.raises(ValueError, match="21 tracks asked"):
    travel.nearest_unused(np.zeros((21, 3)), embeddings)
