"""Retrieval pieces against independent computations (scikit-learn, numpy)."""

import itertools

import numpy as np
import pytest
from sklearn import metrics as sk

from jplaylist.evaluators import metrics
from jplaylist.evaluators import retrieval
from jplaylist.evaluators import splits
from jplaylist.evaluators import vocabulary


@pytest.mark.parametrize("num_items,num_relevant", [(6, 1), (6, 2), (6, 3), (5, 5), (7, 4)])
def test_random_average_precision_is_the_mean_over_all_rankings(num_items, num_relevant):
  labels = np.zeros(num_items, bool)
  labels[:num_relevant] = True
  aps = [sk.average_precision_score(labels, -np.asarray(order, float))
         for order in itertools.permutations(range(num_items))]
  assert metrics.random_average_precision(np.array([num_relevant]), num_items)[0] == (
      pytest.approx(np.mean(aps)))


def test_first_relevant_rank_counts_ties_against_the_query():
  rng = np.random.default_rng(0)
  relevant = rng.random((40, 30)) < 0.1
  relevant[:, 0] |= ~relevant.any(axis=1)
  scores = np.round(rng.normal(size=(40, 30)), 1)  # many ties
  ranks = metrics.first_relevant_rank(relevant, scores)
  for q in range(40):
    # Sort by score descending, irrelevant first among equals: pessimistic.
    order = np.lexsort((relevant[q], -scores[q]))
    assert ranks[q] == np.flatnonzero(relevant[q][order])[0] + 1


def test_template_queries_cover_every_combination_and_match_all_relevant():
  attributes = [{"mood": "calm", "instruments": ["flute", "cello"]},
                {"mood": "calm", "instruments": ["flute"]},
                {"mood": "sad", "instruments": ["cello"]}]
  queries = retrieval.queries_from_templates(
      attributes, {"k": "{mood} music for {instruments}"}, {"mood": {"sad": "melancholy"}})
  texts = {t: c for t, c, _ in queries}
  assert sorted(texts) == ["calm music for cello", "calm music for flute",
                           "melancholy music for cello"]
  relevant = [i for i, a in enumerate(attributes)
              if splits.matches(a, texts["calm music for flute"])]
  assert relevant == [0, 1]
  with pytest.raises(ValueError, match="name each attribute"):
    retrieval.template_fields("music {}")


def test_vocabulary_file_formats_and_errors(tmp_path):
  path = tmp_path / "v.json"
  path.write_text('{"mtat": ["slow", "flute"], "other": ["x"]}')
  assert vocabulary.load_vocabulary(str(path), "mtat") == ("mtat", ["slow", "flute"])
  with pytest.raises(ValueError, match="pick one with name"):
    vocabulary.load_vocabulary(str(path))
  assert vocabulary.tag_matches({"style": "Baroque"}, {"style": ["Baroque", "Classical"]})
  assert not vocabulary.tag_matches({"style": "Celtic"}, [{"style": "Baroque"}])
