"""Request parsing (`requests.parse_request`) by a table of phrasings, its
errors, and a negative request lowering kNN scores end to end."""

import jax
import numpy as np
import pytest

from jplaylist.session import examples
from jplaylist.session import requests
from jplaylist.session import strategies

TABLE = [
    # (user's words, expected text, expected positive)
    ("less piano", "piano", False),
    ("Less Piano!", "piano", False),
    ("  fewer   vocals  ", "vocals", False),
    ("no drums", "drums", False),
    ("No more piano, please", "piano, please", False),
    ("no more piano.", "piano", False),
    ("not jazz", "jazz", False),
    ("not so loud", "loud", False),
    ("not too fast!!", "fast", False),
    ("without guitar", "guitar", False),
    ("stop the saxophone", "saxophone", False),
    ("stop screaming", "screaming", False),
    ("avoid heavy metal", "heavy metal", False),
    ("skip the ballads", "ballads", False),
    ("enough strings", "strings", False),
    ("Enough of the piano", "the piano", False),
    ("more flute", "flute", True),
    ("MORE  Flute?", "flute", True),
    ("nothing but jazz", "jazz", True),
    ("only acoustic guitar", "acoustic guitar", True),
    ("switch to techno", "techno", True),
    ("play something upbeat", "something upbeat", True),
    ("something calmer", "something calmer", True),
    ("Something calmer...", "something calmer", True),
    ("ambient", "ambient", True),
    # Cues match whole words only: these start with a cue's letters.
    ("nothingness drones", "nothingness drones", True),
    ("notorious rap", "notorious rap", True),
    ("lessons in jazz", "lessons in jazz", True),
    ("player piano", "player piano", True),
    ("moreover", "moreover", True),
]


@pytest.mark.parametrize("words,text,positive", TABLE)
def test_parse_table(words, text, positive):
  got = requests.parse_request(words)
  assert got == requests.Request(text=text, positive=positive)
  assert requests.label(got) == (1.0 if positive else 0.0)


def test_request_is_frozen():
  request = requests.parse_request("less piano")
  with pytest.raises(Exception):
    request.positive = True


@pytest.mark.parametrize("words", ["", "   ", "\t\n", "?!", "less", "no more", "Stop the!",
                                   "more", "nothing but ..."])
def test_empty_requests_raise_naming_the_text(words):
  with pytest.raises(ValueError, match="request " + __import__("re").escape(repr(words))):
    requests.parse_request(words)


def test_long_request_raises_naming_the_length():
  requests.parse_request("a" * requests.MAX_CHARS)  # the limit itself is fine
  with pytest.raises(ValueError, match="201 characters"):
    requests.parse_request("a" * 201)


def test_non_string_raises():
  with pytest.raises(ValueError, match="string"):
    requests.parse_request(None)


def _two_clusters(rng, per_cluster=6, dim=8):
  """Unit tracks around e0 (cluster A) and e1 (cluster B)."""
  centres = np.eye(dim)[:2]
  tracks = np.concatenate([c + 0.15 * rng.normal(size=(per_cluster, dim)) for c in centres])
  tracks /= np.linalg.norm(tracks, axis=1, keepdims=True)
  return tracks.astype(np.float32), np.repeat([0, 1], per_cluster)


def test_negative_request_lowers_knn_scores_near_its_text():
  rng = np.random.default_rng(0)
  cand, cluster = _two_clusters(rng)
  dim = cand.shape[1]
  params = strategies.StrategyParams.create()
  stats = strategies.candidate_stats(cand)
  # The session so far: one listened track of each cluster.
  state = strategies.init_state(8, dim, np.zeros(dim, np.float32))
  for event, track in enumerate([0, 7]):
    state = strategies.observe_track(state, params, cand[track], examples.LISTEN, event, 0.0)
  # "less piano", the text "piano" embedding near cluster A's centre.
  request = requests.parse_request("Less piano!")
  text_embedding = np.eye(dim, dtype=np.float32)[0]
  after = {}
  for name, lab in [("before", None), ("negative", requests.label(request)), ("positive", 1.0)]:
    s = state if lab is None else strategies.observe_text(state, text_embedding, 2, 0.0,
                                                          label=lab)
    after[name], _ = strategies.score("knn", s, params, cand, stats, 2, 0.0, jax.random.key(0))
    after[name] = np.asarray(after[name])
  a, b = cluster == 0, cluster == 1
  # Cluster A drops, relative to B and in absolute value; a positive request
  # for the same text raises it instead.
  assert after["negative"][a].max() < after["before"][a].min()
  assert (after["negative"][a].mean() - after["negative"][b].mean()
          < after["before"][a].mean() - after["before"][b].mean() - 0.3)
  assert after["positive"][a].mean() > after["before"][a].mean()
  # numpy reference of the knn score: unit weighted positive centroid minus
  # knn_negative x unit weighted negative centroid.
  decay = 0.85
  pos = decay ** 2 * cand[0] + decay * cand[7]
  neg = 3.0 * text_embedding
  query = pos / np.linalg.norm(pos) - 0.5 * neg / np.linalg.norm(neg)
  np.testing.assert_allclose(after["negative"], cand @ query, atol=1e-5)
