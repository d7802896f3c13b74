"""Next-track metrics against scikit-learn and a brute-force ranking."""

import numpy as np
import pytest
import sklearn.metrics

from jplaylist.playlists import als
from jplaylist.playlists import evaluate


def _brute_force_ranks(scores, targets, exclude, tie_order):
  ranks = []
  for q, target in enumerate(targets):
    if exclude[q, target]:
      ranks.append(scores.shape[1])
      continue
    candidates = np.flatnonzero(~exclude[q])
    order = candidates[np.lexsort((tie_order[candidates], -scores[q, candidates]))]
    ranks.append(int(np.flatnonzero(order == target)[0]))
  return np.array(ranks)


def test_hit_rate_and_ndcg_match_sklearn():
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(200, 50))
  targets = rng.integers(0, 50, 200)
  ranks = evaluate.target_ranks(scores, targets, exclude=np.zeros_like(scores, bool),
                                tie_order=np.arange(50))
  relevance = np.zeros_like(scores)
  relevance[np.arange(200), targets] = 1.0
  np.testing.assert_allclose(evaluate.ndcg(ranks, 10),
                             sklearn.metrics.ndcg_score(relevance, scores, k=10), rtol=1e-12)
  top10 = np.argsort(-scores, axis=1)[:, :10]
  assert evaluate.hit_rate(ranks, 10) == np.mean([t in row for t, row in zip(targets, top10)])
  assert 0.0 < evaluate.hit_rate(ranks, 10) < 1.0


def test_ranks_with_exclusion_and_ties_match_brute_force():
  rng = np.random.default_rng(1)
  scores = rng.integers(0, 4, (100, 30)).astype(float)  # many ties
  scores[:, :5] = -np.inf                                # unknown tracks
  targets = rng.integers(0, 30, 100)
  exclude = rng.random((100, 30)) < 0.2
  tie_order = rng.permutation(30)
  ranks = evaluate.target_ranks(scores, targets, exclude=exclude, tie_order=tie_order)
  np.testing.assert_array_equal(ranks, _brute_force_ranks(scores, targets, exclude, tie_order))
  assert np.any(ranks == 30)  # excluded targets are misses


def test_cosine_scorer_is_the_mean_direction_of_the_last_known_items():
  rng = np.random.default_rng(2)
  vectors = rng.normal(size=(12, 4))
  known = np.ones(12, bool)
  known[[3, 9]] = False
  scores = evaluate.cosine_scorer(vectors, known, context_size=2)([np.array([0, 5, 3, 7])])
  unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
  query = unit[[5, 7]].mean(0)  # 3 is unknown: the last two known are 5 and 7
  expected = unit @ (query / np.linalg.norm(query))
  np.testing.assert_allclose(scores[0, known], expected[known])
  assert np.all(scores[0, ~known] == -np.inf)


def test_mf_scorer_folds_the_context_in():
  rng = np.random.default_rng(3)
  factors = rng.normal(size=(10, 3)).astype(np.float32)
  known = np.ones(10, bool)
  scores = evaluate.mf_scorer(factors, known, regularization=0.2, alpha=1.5)([np.array([1, 4])])
  user = als.fold_in(factors, [np.array([1, 4])], regularization=0.2, alpha=1.5)[0]
  np.testing.assert_allclose(scores[0], factors @ user, rtol=1e-5)


def test_table_splits_warm_and_cold_targets():
  # Tracks 0-9 on an arc, gaps shrinking (no ties); a sequence walks up it, so
  # the next track is the nearest unplayed one to its last item. "audio" knows
  # every track; "cf" not the cold ones.
  positions = np.arange(10.0) - 0.01 * np.arange(10.0)**2
  vectors = np.stack([np.cos(positions / 10), np.sin(positions / 10)], 1)
  cold = np.zeros(10, bool)
  cold[[4, 8]] = True
  sequences = [[0, 1, 2, 3, 4], [5, 6, 7, 8], [0, 1, 2], [6, 7, 8, 9]]
  scorers = {"audio": evaluate.cosine_scorer(vectors, context_size=1),
             "cf": evaluate.cosine_scorer(vectors, ~cold, context_size=1),
             "random": evaluate.random_scorer(10, seed=0)}
  table = evaluate.next_track_table(sequences, scorers, num_tracks=10, cold=cold, k=1)
  subsets = table["subsets"]
  assert (subsets["all"]["count"], subsets["warm"]["count"], subsets["cold"]["count"]) == (4, 2, 2)
  assert subsets["cold"]["methods"]["audio"]["hit_rate"] == 1.0
  assert subsets["cold"]["methods"]["cf"]["hit_rate"] == 0.0
  assert subsets["warm"]["methods"]["cf"]["hit_rate"] == 1.0
  assert subsets["all"]["methods"]["audio"]["ndcg"] == 1.0
  markdown = evaluate.to_markdown(table)
  assert "| audio | 1.000 | 1.000 |" in markdown and "cold hit@1" in markdown


def test_table_is_the_same_block_by_block():
  rng = np.random.default_rng(4)
  vectors = rng.normal(size=(30, 5))
  sequences = [rng.integers(0, 30, rng.integers(2, 7)).tolist() for _ in range(50)]
  scorers = {"cosine": evaluate.cosine_scorer(vectors, context_size=3)}
  one = evaluate.next_track_table(sequences, scorers, num_tracks=30, k=5, block=1)
  many = evaluate.next_track_table(sequences, scorers, num_tracks=30, k=5, block=1024)
  assert one == many and one["target_in_context"] > 0


def test_evaluation_rejects_bad_arguments_by_name():
  scorers = {"random": evaluate.random_scorer(5)}
  with pytest.raises(ValueError, match="k=0"):
    evaluate.next_track_table([[0, 1]], scorers, num_tracks=5, k=0)
  with pytest.raises(ValueError, match="cold has shape"):
    evaluate.next_track_table([[0, 1]], scorers, num_tracks=5, cold=np.zeros(4, bool))
  with pytest.raises(ValueError, match="num_tracks=5"):
    evaluate.next_track_table([[0, 7]], scorers, num_tracks=5)
  with pytest.raises(ValueError, match="context_size=-1"):
    evaluate.cosine_scorer(np.ones((5, 2)), context_size=-1)
  with pytest.raises(ValueError, match="context_size=-2"):
    evaluate.mf_scorer(np.ones((5, 2)), np.ones(5, bool), regularization=0.1, alpha=1.0,
                       context_size=-2)
