"""The patent's worked example on real embeddings of the trained demo model.

WO2024043931A1: a listener plays a flute concerto and a flute-with-strings
piece and skips a flute-with-piano piece; the per-session classifier then
ranks flute solos and flute with strings above flute with piano. Here the
listens are two flute-with-strings recordings and the skip one flute-with-
piano recording of the demo corpus, embedded by the `make demo` model
(tests/session/data/README.md says how the file was made):

  from jplaylist import library_index
  full = library_index.load("/tmp/demo_library.npz")
  keep = [i for i, a in enumerate(full.attributes) if a["ensemble"] in ENSEMBLES]
"""

import itertools
import os

import numpy as np
from sklearn.metrics import roc_auc_score

from jplaylist import library_index
from jplaylist.session import examples
from jplaylist.session import logreg

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "demo_flute.npz")
ENSEMBLES = ("solo flute", "flute with strings", "flute with piano")


def _classifier_scores(embeddings, listened, skipped):
  history = examples.History.empty(8, embeddings.shape[1])
  events = [(i, examples.LISTEN) for i in listened] + [(i, examples.SKIP) for i in skipped]
  for step, (index, kind) in enumerate(events):
    history = history.append_track(embeddings[index], kind, step, 0.0)
  weights = examples.weights(history, examples.WeightRules.create(), len(events))
  fit = logreg.fit(history.x, history.label, weights)
  return embeddings @ np.asarray(fit.coef) + float(fit.intercept)


def test_flute_with_strings_and_solos_rank_above_flute_with_piano():
  index = library_index.load(DATA)
  ensemble = np.array([a["ensemble"] for a in index.attributes])
  assert sorted(set(ensemble)) == sorted(ENSEMBLES)
  strings = np.flatnonzero(ensemble == "flute with strings")
  piano = np.flatnonzero(ensemble == "flute with piano")
  liked = np.flatnonzero(ensemble != "flute with piano")
  aucs = []
  # Every pair of flute-with-strings listens with each flute-with-piano skip.
  for (a, b), c in itertools.product(itertools.combinations(strings, 2), piano):
    scores = _classifier_scores(index.embeddings, [a, b], [c])
    rest_liked = [i for i in liked if i not in (a, b)]
    rest_piano = [i for i in piano if i != c]
    # The patent's claim, per session: the unplayed solos and flute-with-strings
    # pieces rank above the flute-with-piano pieces on average.
    assert scores[rest_liked].mean() > scores[rest_piano].mean(), (a, b, c)
    aucs.append(roc_auc_score(np.r_[np.ones(len(rest_liked)), np.zeros(len(rest_piano))],
                              np.r_[scores[rest_liked], scores[rest_piano]]))
  assert len(aucs) == 45 * 13
  assert np.mean(aucs) > 0.8
