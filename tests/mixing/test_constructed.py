"""Constructed tracks with a known highlight: the energy rule against first-S."""

import numpy as np
import pytest

from jplaylist.mixing import constructed
from jplaylist.mixing import highlights


def test_a_constructed_track_is_louder_inside_its_highlight():
  track = constructed.make_track(np.random.default_rng(5), seconds=20.0,
                                 highlight_seconds=6.0, distractor_seconds=0.0)
  start, end = track.highlight
  assert 0.0 <= start and end <= 20.0 and abs(end - start - 6.0) < 1e-9
  time = np.arange(len(track.audio)) / track.sample_rate
  inside = (time >= start) & (time < end)
  rms_in = np.sqrt(np.mean(track.audio[inside] ** 2))
  rms_out = np.sqrt(np.mean(track.audio[~inside] ** 2))
  assert 20 * np.log10(rms_in / rms_out) > 6.0
  again = constructed.make_track(np.random.default_rng(5), seconds=20.0,
                                 highlight_seconds=6.0, distractor_seconds=0.0)
  np.testing.assert_array_equal(track.audio, again.audio)


def test_energy_rule_beats_the_first_seconds_rule_on_constructed_tracks():
  tracks = constructed.make_tracks(24, seed=0, seconds=30.0, highlight_seconds=8.0)
  results = constructed.evaluate(tracks, 8.0)
  # The first-S rule only scores where the ensemble enters early.
  assert results["energy"]["iou"] > results["first"]["iou"] + 0.3, results
  assert results["energy"]["hit_rate"] > 0.6, results


def test_evaluate_reports_overlaps_computed_by_hand():
  # Two 10-s tracks, near-silent but for one loud stretch each; S = 2 s.
  # The energy rule finds each loud stretch's start (to a 32-ms frame), so the
  # truths are set against those stretches by hand:
  #   track 0: loud 3-5 s, truth 3-5 s   -> IoU 1,   coverage 1
  #   track 1: loud 6-8 s, truth 7-10 s  -> overlap 1 s, union 4 s: IoU 0.25,
  #                                          coverage 1/3
  # first-S predicts 0-2 s: no overlap with either truth.
  rate = 16_000
  time = np.arange(10 * rate) / rate

  def loud(start):
    inside = (time >= start) & (time < start + 2)
    return (np.sin(2 * np.pi * 440 * time) * np.where(inside, 0.5, 1e-4)).astype(np.float32)

  tracks = [constructed.ConstructedTrack(loud(3.0), rate, (3.0, 5.0)),
            constructed.ConstructedTrack(loud(6.0), rate, (7.0, 10.0))]
  results = constructed.evaluate(tracks, 2.0)
  frame = highlights.ENERGY_FRONTEND.hop_length / rate
  assert results["energy"]["iou"] == pytest.approx((1.0 + 0.25) / 2, abs=2 * frame)
  assert results["energy"]["coverage"] == pytest.approx((1.0 + 1 / 3) / 2, abs=2 * frame)
  assert results["energy"]["hit_rate"] == 0.5 and results["energy"]["num_tracks"] == 2
  assert results["first"] == {"iou": 0.0, "coverage": 0.0, "hit_rate": 0.0, "num_tracks": 2}


def test_bad_lengths_and_track_sets_are_refused_by_name():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="highlight_seconds=12.0"):
    constructed.make_track(rng, seconds=10.0, highlight_seconds=12.0)
  with pytest.raises(ValueError, match="seconds=0"):
    constructed.make_track(rng, seconds=0.0)
  with pytest.raises(ValueError, match="distractor_seconds=-1"):
    constructed.make_track(rng, seconds=10.0, highlight_seconds=2.0, distractor_seconds=-1.0)
  with pytest.raises(ValueError, match="empty list"):
    constructed.evaluate([], 2.0)
  short, long = (constructed.make_track(rng, seconds=s, highlight_seconds=2.0)
                 for s in (5.0, 6.0))
  with pytest.raises(ValueError, match=r"one length and sample rate.*80000.*96000"):
    constructed.evaluate([short, long], 2.0)


def test_attention_on_the_truth_helps_and_flat_attention_changes_nothing():
  tracks = constructed.make_tracks(12, seed=1, seconds=30.0, highlight_seconds=8.0)
  frames = 300

  def oracle(audio, sample_rate):
    del audio, sample_rate
    time = (np.arange(frames) + 0.5) * 30.0 / frames
    return np.stack([0.05 + ((time >= t.highlight[0]) & (time < t.highlight[1]))
                     for t in tracks])

  with_oracle = constructed.evaluate(tracks, 8.0, attention_fn=oracle)
  flat = constructed.evaluate(tracks, 8.0, attention_fn=lambda a, r: np.ones((len(a), 9)))
  assert with_oracle["attention"]["iou"] >= with_oracle["energy"]["iou"]
  assert with_oracle["attention"]["hit_rate"] == 1.0
  assert flat["attention"] == flat["energy"]
