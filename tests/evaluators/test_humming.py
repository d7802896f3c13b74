"""Query by humming: the sung melody has the score's pitches and timing, one
note at a time; off key moves every note by the same interval; the search
figures equal scikit-learn's."""

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.metrics import average_precision_score

from jplaylist.data.demo import catalogue
from jplaylist.evaluators import humming
from jplaylist.evaluators import self_supervised

RATE = 16_000


def _f0(audio, onset, duration):
  """Frequency of the strongest FFT bin in the middle of a note (0.5 Hz bins)."""
  middle = audio[int((onset + 0.25 * duration) * RATE):int((onset + 0.75 * duration) * RATE)]
  spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)), n=2 * RATE))
  return np.argmax(spectrum) * 0.5


def test_a_sung_melody_has_the_notes_pitches_and_onsets():
  notes = np.array([[0.0, 0.5, 60], [0.5, 0.5, 64], [1.0, 1.0, 67], [2.0, 0.5, 72]])
  audio = humming.hum(notes, 0.5, RATE, humming.IN_TUNE, np.random.default_rng(0))
  assert audio.dtype == np.float32 and np.isclose(np.abs(audio).max(), 0.5)
  assert abs(len(audio) / RATE - 2.7) < 1e-3  # the last note's end, plus 0.2 s
  for onset, duration, pitch in notes:
    want = 440.0 * 2 ** ((pitch - 69) / 12)
    assert abs(_f0(audio, onset, duration) / want - 1) < 0.01, pitch
  # Silence after the last note.
  assert np.abs(audio[int(2.55 * RATE):]).max() < 1e-6


def test_off_key_moves_every_note_by_one_interval():
  notes = np.array([[0.0, 0.6, 62], [0.6, 0.6, 66], [1.2, 0.6, 69]])
  settings = humming.HumSettings(off_key_semitones=3, detune_cents=30.0)
  ratios = []
  for seed in range(4):
    audio = humming.hum(notes, 0.6, RATE, settings, np.random.default_rng(seed))
    ratio = [_f0(audio, o, d) / (440.0 * 2 ** ((p - 69) / 12)) for o, d, p in notes]
    assert np.ptp(np.log2(ratio)) * 1200 < 10  # one interval for all notes (cents)
    assert abs(np.log2(ratio[0]) * 12) <= 3.3 + 0.05
    ratios.append(ratio[0])
  assert np.ptp(np.log2(ratios)) > 0  # the seeds sing in different keys


def test_off_tempo_scales_the_length():
  notes = np.array([[float(i), 1.0, 60 + i % 5] for i in range(10)])
  lengths = [len(humming.hum(notes, 1.0, RATE, humming.HumSettings(off_tempo=0.15),
                             np.random.default_rng(s))) / RATE for s in range(8)]
  assert all(10.0 / 1.15 + 0.2 - 0.01 <= x <= 10.0 / 0.85 + 0.2 + 0.01 for x in lengths)
  assert np.ptp(lengths) > 0.2


def test_the_melody_is_the_scores_top_line_one_note_at_a_time():
  work = catalogue.list_works("bach_chorales")[0]
  score = catalogue.parse(work)
  attributes = {"collection": "bach_chorales", "composition": work.id, "tempo_bpm": 60.0,
                "transpose": 2}
  notes, beat = humming.melody_notes(attributes)
  assert np.all(np.diff(notes[:, 0]) > 0)  # monophonic
  assert np.all(notes[:-1, 0] + notes[:-1, 1] <= notes[1:, 0] + 1e-9)
  seconds_per_quarter = 60.0 / (60.0 * score.beat_quarters)
  top = score.parts[0]
  first = top[np.argmin(top[:, 0])]
  np.testing.assert_allclose(notes[0], [first[0] * seconds_per_quarter,
                                        first[1] * seconds_per_quarter, first[2] + 2])
  assert beat == seconds_per_quarter * score.beat_quarters


def test_monophonic_keeps_the_highest_of_a_chord_and_cuts_overlaps():
  notes = np.array([[1.0, 2.0, 60], [0.0, 3.0, 64], [0.0, 1.0, 67], [2.0, 1.0, 62]])
  np.testing.assert_array_equal(humming.monophonic(notes),
                                [[0.0, 1.0, 67], [1.0, 1.0, 60], [2.0, 1.0, 62]])


def test_query_search_matches_sklearn():
  rng = np.random.default_rng(7)
  queries, library = rng.normal(size=(5, 3)), rng.normal(size=(9, 3))
  query_groups = np.array([0, 1, 2, 3, 9])  # group 9 has no recording: skipped
  library_groups = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5])
  out = self_supervised.query_search(queries, library, query_groups, library_groups)
  scores = -cdist(queries, library, "sqeuclidean")
  aps = [average_precision_score(library_groups == g, s)
         for g, s in zip(query_groups[:4], scores[:4])]
  np.testing.assert_allclose(out["map"], np.mean(aps), rtol=1e-9)
  assert out["queries"] == 4
  recalls = [np.sum((library_groups == g)[np.argsort(-s)[:10]]) / np.sum(library_groups == g)
             for g, s in zip(query_groups[:4], scores[:4])]
  np.testing.assert_allclose(out["r_at_10"], np.mean(recalls))
