"""Transition costs: keys against the Camelot wheel, tempo ratios, key finding."""

import itertools

import numpy as np
import pytest
import scipy.stats

from jplaylist.mixing import transitions

RATE = 16_000

# The Camelot wheel as DJs print it: number and letter (B major, A minor).
CAMELOT = {"C major": "8B", "G major": "9B", "D major": "10B", "A major": "11B",
           "E major": "12B", "B major": "1B", "F# major": "2B", "Db major": "3B",
           "Ab major": "4B", "Eb major": "5B", "Bb major": "6B", "F major": "7B",
           "A minor": "8A", "E minor": "9A", "B minor": "10A", "F# minor": "11A",
           "C# minor": "12A", "G# minor": "1A", "D# minor": "2A", "Bb minor": "3A",
           "F minor": "4A", "C minor": "5A", "G minor": "6A", "D minor": "7A"}


def _camelot_steps(a, b):
  number_a, number_b = int(CAMELOT[a][:-1]), int(CAMELOT[b][:-1])
  around = abs(number_a - number_b) % 12
  return min(around, 12 - around) + (CAMELOT[a][-1] != CAMELOT[b][-1])


def test_key_steps_are_steps_on_the_camelot_wheel():
  for a, b in itertools.product(CAMELOT, CAMELOT):
    assert transitions.key_steps(transitions.parse_key(a), transitions.parse_key(b)) == \
        _camelot_steps(a, b), (a, b)
  assert transitions.key_steps(None, transitions.parse_key("C")) == \
      transitions.UNKNOWN_KEY_STEPS
  # The unknown-key cost is the mean over random pairs of keys.
  assert np.mean([_camelot_steps(a, b) for a, b in itertools.product(CAMELOT, CAMELOT)]) == \
      transitions.UNKNOWN_KEY_STEPS


def test_parse_key_reads_spellings_and_rejects_others():
  assert transitions.parse_key("F# minor") == transitions.Key(6, "minor")
  assert transitions.parse_key("Gb major") == transitions.Key(6, "major")
  assert transitions.parse_key("bbm") == transitions.Key(10, "minor")
  assert transitions.parse_key("B#") == transitions.Key(0, "major")
  assert transitions.parse_key("F-sharp minor") == transitions.Key(6, "minor")
  assert transitions.parse_key("E-flat major") == transitions.Key(3, "major")
  assert transitions.parse_key("B- minor") == transitions.Key(10, "minor")
  assert transitions.parse_key("C Minor") == transitions.Key(0, "minor")
  # The single mode letter is case-sensitive, as in chord symbols.
  assert transitions.parse_key("CM") == transitions.Key(0, "major")
  assert transitions.parse_key("Cm") == transitions.Key(0, "minor")
  assert transitions.parse_key("F#MAJ") == transitions.Key(6, "major")
  assert transitions.parse_key("a MIN") == transitions.Key(9, "minor")
  assert transitions.parse_key("") is None
  assert transitions.key_of_attributes({"tonic": "A", "mode": "minor"}) == \
      transitions.Key(9, "minor")
  assert transitions.key_of_attributes({"key": "D major", "tonic": "A"}) == \
      transitions.Key(2, "major")
  assert transitions.key_of_attributes({}) is None
  for text in ("H dorian", "C major minor", "sharp"):
    with pytest.raises(ValueError, match="not a key"):
      transitions.parse_key(text)


def test_tempo_distance_allows_half_and_double_tempo():
  bpm = np.array([120.0, 60.0, 240.0, 90.0, 128.0, 500.0])
  got = transitions.tempo_distance(bpm)
  for i, j in itertools.product(range(len(bpm)), repeat=2):
    direct = min(abs(np.log2(bpm[i] * factor / bpm[j])) for factor in (0.5, 1.0, 2.0))
    assert got[i, j] == pytest.approx(direct, abs=1e-12)
  assert got[0, 1] == got[0, 2] == 0.0
  assert got[0, 5] == pytest.approx(np.log2(500 / 240))   # only one doubling is allowed


def test_a_tempo_that_is_not_positive_and_finite_is_unknown_and_costs_one_tolerance():
  # librosa's beat tracker says 0.0 BPM for silence; log2(0) must not reach the cost.
  bpm = np.array([120.0, 0.0, -5.0, np.inf, np.nan, 125.0])
  distance = transitions.tempo_distance(bpm)
  assert np.isnan(distance[1:5]).all() and np.isnan(distance[:, 1:5]).all()
  assert distance[0, 5] == pytest.approx(np.log2(125 / 120))
  terms = transitions.cost_terms(bpm, [None] * 6, np.eye(6),
                                 transitions.CostWeights(tempo=3.0))
  assert np.isfinite(terms["total"]).all()
  off_diagonal = ~np.eye(6, dtype=bool)
  assert (terms["tempo"][1:5][off_diagonal[1:5]] == 3.0).all()


def test_cost_terms_are_weighted_symmetric_and_zero_on_the_diagonal():
  rng = np.random.default_rng(0)
  embeddings = rng.standard_normal((5, 8))
  keys = [transitions.parse_key(k) for k in ("C", "Am", "G", None, "F# minor")]
  bpm = np.array([120.0, 122.0, 61.0, np.nan, 100.0])
  terms = transitions.cost_terms(bpm, keys, embeddings)
  double = transitions.cost_terms(bpm, keys, embeddings,
                                  transitions.CostWeights(tempo=2.0, key=1.0, embedding=4.0))
  unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
  for name in ("tempo", "key", "embedding", "total"):
    np.testing.assert_allclose(terms[name], terms[name].T)
    assert not np.diag(terms[name]).any()
    np.testing.assert_allclose(double[name], 2 * terms[name])
  np.testing.assert_allclose(terms["embedding"][0, 1], 2.0 * (1 - unit[0] @ unit[1]))
  assert terms["tempo"][0, 1] == pytest.approx(np.log2(122 / 120) / np.log2(1.08))
  assert terms["tempo"][0, 3] == 1.0                     # unknown tempo: one tolerance
  assert terms["key"][0, 1] == 0.5 and terms["key"][0, 3] == 0.5 * 3.5
  np.testing.assert_allclose(terms["total"],
                             terms["tempo"] + terms["key"] + terms["embedding"])


def test_key_correlations_are_pearson_correlations_with_rotated_profiles():
  from jplaylist.models import key_profile  # pylint: disable=g-import-not-at-top
  profile = np.random.default_rng(1).random(12)
  got = transitions.key_correlations(profile)
  for tonic in range(12):
    assert got[tonic] == pytest.approx(scipy.stats.pearsonr(
        profile, np.roll(key_profile.KK_MAJOR, tonic))[0])
    assert got[12 + tonic] == pytest.approx(scipy.stats.pearsonr(
        profile, np.roll(key_profile.KK_MINOR, tonic))[0])


def _cadence(root, chords, seconds=1.0):
  """Harmonic-tone triads (MIDI pitches above `root`), one per `seconds`."""
  t = np.arange(int(RATE * seconds)) / RATE
  parts = []
  for chord in chords:
    tone = sum(np.sin(2 * np.pi * 440 * 2 ** ((root + p - 69) / 12) * h * t) / h
               for p in chord for h in (1, 2, 3))
    parts.append(tone * np.exp(-1.5 * t))
  return (0.1 * np.concatenate(parts)).astype(np.float32)


def test_estimate_key_finds_the_key_of_cadences():
  # I-IV-V-I in D major, and i-iv-V-i in A minor (with its raised leading tone).
  major = _cadence(62, [(0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7), (0, 7, 16)])
  minor = _cadence(57, [(0, 3, 7), (5, 8, 12), (7, 11, 14), (0, 3, 7), (0, 7, 15)])
  assert transitions.estimate_key(major, RATE) == transitions.Key(2, "major")
  assert transitions.estimate_key(minor, RATE) == transitions.Key(9, "minor")
