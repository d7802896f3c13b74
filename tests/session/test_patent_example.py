"""The patent's worked example through the live session API on the demo model.

WO2024043931A1: a listener plays flute-with-strings pieces and skips a
flute-with-piano piece; the per-session learner then ranks the remaining
solo-flute and flute-with-strings pieces above the flute-with-piano ones.

The library is `tests/session/data/demo_flute.npz`: the 37 solo-flute,
flute-with-strings and flute-with-piano recordings of the demo corpus,
embedded by the model `make demo` trains (`configs/demo.py`, step 600;
tests/session/data/README.md says how to remake it). Every session of the
example runs through `live.LiveSession`: each of the 66 pairs of the 12
flute-with-strings recordings listened to in full, then each of the 10
flute-with-piano recordings skipped early, 660 sessions, then `next` ranks
the other 34 recordings.

With real embeddings the claim does not hold pair by pair in every session:
some flute-with-piano recordings sound closer to the listened ones than some
solos do. What is checked is the order on average and how often it holds,
for the patent's strategy ("adaptive") and the library's default (LinUCB).
Measured on this file (`python -m bench.flute_example --index=...` prints the
same figures): adaptive, mean ranking AUC 0.714 (smallest 0.387), AUC over 0.5
in 96% of sessions, the wanted pieces' mean score higher in 97%; LinUCB
0.649 (smallest 0.311), 87% and 88%. The bars below sit just under those
figures, so a change to the session code that weakens the example fails.
"""

import itertools
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jplaylist import library_index
from jplaylist.session import examples
from jplaylist.session import library as library_lib
from jplaylist.session import live
from jplaylist.session import strategies

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "demo_flute.npz")
ENSEMBLES = ("solo flute", "flute with strings", "flute with piano")
# History slots: three events fill three.
SLOTS = 8
# strategy -> (mean AUC, share of sessions with AUC > 0.5, share with the
# wanted pieces' mean score higher): just under the measured figures above.
BARS = {"adaptive": (0.70, 0.95, 0.95), strategies.DEFAULT_STRATEGY: (0.63, 0.85, 0.85)}


def _no_requests(texts):
  raise AssertionError(f"the flute example makes no requests, got {texts!r}")


@pytest.fixture(scope="module")
def flute():
  index = library_index.load(DATA)
  ensemble = np.array([a["ensemble"] for a in index.attributes])
  return library_lib.library_from_index(index), ensemble


def test_the_stored_library_is_the_three_flute_ensembles(flute):
  library, ensemble = flute
  assert sorted(set(ensemble)) == sorted(ENSEMBLES)
  assert [np.sum(ensemble == e) for e in ENSEMBLES] == [15, 12, 10]
  assert library.embeddings.shape == (37, 128)
  durations = np.asarray(library.duration_s)
  assert durations.min() > 5.0 and durations.max() < 30.0  # the demo clips' own lengths


@pytest.mark.parametrize("strategy", sorted(BARS))
def test_the_patents_flute_example(flute, strategy):
  library, ensemble = flute
  ids = library.info.ids
  strings = np.flatnonzero(ensemble == "flute with strings")
  piano = np.flatnonzero(ensemble == "flute with piano")
  aucs, mean_higher = [], []
  for (a, b), c in itertools.product(itertools.combinations(strings, 2), piano):
    session = live.LiveSession(library, _no_requests, strategy=strategy,
                               max_examples=SLOTS).start()
    assert session.listened(ids[a]) == examples.LISTEN
    assert session.listened(ids[b]) == examples.LISTEN
    # 2% of the track: an early skip (a partial play from 5% on).
    assert session.skipped(ids[c], 0.02 * float(library.duration_s[c])) == examples.SKIP
    ranked = session.next(len(ids))
    rest = [ids.index(t) for t, _ in ranked]
    assert sorted(rest) == sorted(set(range(len(ids))) - {a, b, c})
    scores = np.array([s for _, s in ranked])
    assert np.all(np.diff(scores) <= 0)
    wanted = ensemble[rest] != "flute with piano"
    # AUC from the scores (sklearn) and from the order alone (pairs counted
    # in numpy): the same figure two ways, ties aside.
    auc = roc_auc_score(wanted, scores)
    position = np.arange(len(rest))
    in_order = np.mean(position[wanted][:, None] < position[~wanted][None, :])
    assert abs(auc - in_order) < 1e-9 or np.any(np.diff(scores) == 0)
    aucs.append(auc)
    mean_higher.append(scores[wanted].mean() > scores[~wanted].mean())
  assert len(aucs) == 66 * 10
  aucs = np.array(aucs)
  mean_auc, share_auc, share_mean = BARS[strategy]
  assert aucs.mean() > mean_auc, aucs.mean()
  assert np.mean(aucs > 0.5) > share_auc, np.mean(aucs > 0.5)
  assert np.mean(mean_higher) > share_mean, np.mean(mean_higher)


def test_the_example_is_not_an_artefact_of_the_measure(flute):
  """With the ensembles shuffled, the same sessions rank 'wanted' at chance.

  The listens and skips are drawn from shuffled labels, so nothing in the
  embeddings ties them to the pieces called wanted: the mean AUC falls to
  about 0.5, far under the real labels' 0.65-0.71.
  """
  library, ensemble = flute
  ids = library.info.ids
  rng = np.random.default_rng(0)
  aucs = []
  # One shuffle's sessions share its labels, so their AUCs go up and down
  # together (a shuffle's mean ranges 0.38-0.61): many shuffles, few sessions each.
  for _ in range(50):
    shuffled = rng.permutation(ensemble)
    strings = np.flatnonzero(shuffled == "flute with strings")
    piano = np.flatnonzero(shuffled == "flute with piano")
    for _ in range(8):
      a, b = rng.choice(strings, 2, replace=False)
      c = rng.choice(piano)
      session = live.LiveSession(library, _no_requests, max_examples=SLOTS).start()
      session.listened(ids[a])
      session.listened(ids[b])
      session.skipped(ids[c], 0.02 * float(library.duration_s[c]))
      ranked = session.next(len(ids))
      rest = [ids.index(t) for t, _ in ranked]
      aucs.append(roc_auc_score(shuffled[rest] != "flute with piano",
                                [s for _, s in ranked]))
  assert len(aucs) == 400
  # The mean of 50 shuffles' means: its standard error is about 0.015.
  assert abs(np.mean(aucs) - 0.5) < 0.05, np.mean(aucs)
