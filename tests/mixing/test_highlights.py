"""Highlight scores and rules against direct computations and librosa."""

import librosa
import numpy as np
import pytest

from jplaylist.mixing import highlights

RATE = 16_000


def _direct_scores(energy, width, attention, rate_weight, reach):
  """window_scores written as plain loops over starts and frames."""
  frames = len(energy)
  level = energy / energy.max()
  weight = np.ones(frames) if attention is None else attention / attention.mean()
  scores = []
  for start in range(frames - width + 1):
    mean = sum(weight[t] * level[t] for t in range(start, start + width)) / width
    after = [level[min(max(t, 0), frames - 1)] for t in range(start, start + reach)]
    before = [level[min(max(t, 0), frames - 1)] for t in range(start - reach, start)]
    scores.append(mean + rate_weight * max(np.mean(after) - np.mean(before), 0.0))
  return np.array(scores)


@pytest.mark.parametrize("rate_weight", [0.0, 0.3])
def test_window_scores_equal_a_direct_computation(rate_weight):
  rng = np.random.default_rng(0)
  energy = rng.random((3, 60)) ** 3
  attention = rng.random((3, 60))
  for row in range(3):
    for curve in (None, attention[row]):
      got = highlights.window_scores(energy[row:row + 1], 11, rate_weight=rate_weight,
                                     rate_frames=4,
                                     attention=None if curve is None else curve[None])
      np.testing.assert_allclose(got[0], _direct_scores(energy[row], 11, curve, rate_weight, 4),
                                 rtol=1e-10)


def test_frame_energy_equals_librosa_mel_power_summed_over_bands():
  rng = np.random.default_rng(1)
  t = np.arange(3 * RATE) / RATE
  audio = (0.3 * np.sin(2 * np.pi * 440 * t) * (t > 1) + 0.05 * rng.standard_normal(len(t))
           ).astype(np.float32)
  energy, frame_seconds = highlights.frame_energy(audio, RATE)
  config = highlights.ENERGY_FRONTEND
  reference = librosa.feature.melspectrogram(
      y=audio, sr=RATE, n_fft=config.n_fft, hop_length=config.hop_length, window="hann",
      center=True, pad_mode="constant", power=2.0, n_mels=config.num_mels, htk=False,
      norm="slaney").sum(axis=0)
  assert frame_seconds == config.hop_length / RATE
  np.testing.assert_allclose(energy, reference, rtol=2e-3, atol=1e-6 * reference.max())


def test_frame_energy_of_a_batch_and_of_padded_buckets_equals_single_calls():
  rng = np.random.default_rng(2)
  audio = rng.standard_normal((5, 2 * RATE + 123)).astype(np.float32)
  batch, _ = highlights.frame_energy(audio, RATE, chunk=2, bucket_seconds=1.5)
  for row in range(5):
    single, _ = highlights.frame_energy(audio[row], RATE, bucket_seconds=1e-4)
    np.testing.assert_allclose(batch[row], single, rtol=1e-5)


def test_rules_pick_the_loud_section_the_first_frames_or_the_attended_one():
  energy = np.full((1, 100), 0.1)
  energy[0, 20:30] = 1.0       # loudest
  energy[0, 60:70] = 0.9       # nearly as loud
  assert highlights.highlight_starts(energy, 10, rule="first")[0] == 0
  assert highlights.highlight_starts(energy, 10, rule="energy")[0] == 20
  attention = np.full((1, 100), 0.2)
  attention[0, 60:70] = 1.0
  assert highlights.highlight_starts(energy, 10, rule="attention", attention=attention)[0] == 60
  # A flat attention curve, at any frame rate, is the energy rule.
  flat = np.ones((1, 7))
  np.testing.assert_allclose(highlights.window_scores(energy, 10, attention=flat),
                             highlights.window_scores(energy, 10))
  with pytest.raises(ValueError, match="needs an attention"):
    highlights.highlight_starts(energy, 10, rule="attention")
  with pytest.raises(ValueError, match="unknown rule"):
    highlights.highlight_starts(energy, 10, rule="loudest")


def test_the_rise_term_moves_the_start_onto_the_entry_of_a_long_loud_section():
  energy = np.full((1, 200), 0.05)
  energy[0, 80:] = 1.0         # a loud plateau longer than the window
  energy[0, 150:] = 0.98
  # Every start in 80..90 has the same window mean: without the rise the
  # argmax lands on the plateau wherever round-off puts it.
  without = highlights.highlight_starts(energy, 60, rate_weight=0.0)[0]
  with_rise = highlights.highlight_starts(energy, 60, rate_weight=0.1, rate_frames=10)[0]
  assert 80 <= without <= 90 and with_rise == 80
  energy[0, 80:140] = 0.95     # now the plain window mean prefers a later start
  assert highlights.highlight_starts(energy, 60, rate_weight=0.0)[0] > 80
  assert highlights.highlight_starts(energy, 60, rate_weight=0.1, rate_frames=10)[0] == 80


def test_interval_overlap_equals_counting_on_a_fine_grid():
  rng = np.random.default_rng(3)
  grid = np.arange(0, 60, 1e-3) + 5e-4   # millisecond cells, by their centres
  for _ in range(50):
    a, b = np.sort(rng.uniform(0, 30, 2))
    c, d = np.sort(rng.uniform(0, 30, 2))
    if rng.random() < 0.2:
      c, d = a + 0.5 * (b - a), a + 0.5 * (b - a) + (d - c)   # overlapping on purpose
    iou, coverage = highlights.interval_overlap(a, b, c, d)
    inside_p = (grid >= a) & (grid < b)
    inside_t = (grid >= c) & (grid < d)
    both, either = np.sum(inside_p & inside_t), np.sum(inside_p | inside_t)
    assert iou == pytest.approx(both / either, abs=2e-3)
    assert coverage == pytest.approx(both / max(inside_t.sum(), 1), abs=3e-3)
  assert highlights.interval_overlap(0, 5, 10, 15) == (0.0, 0.0)
  np.testing.assert_allclose(highlights.interval_overlap(0, 10, 5, 15), (5 / 15, 0.5))


def test_find_highlights_returns_seconds_and_handles_short_tracks():
  t = np.arange(20 * RATE) / RATE
  audio = (0.01 + 0.5 * ((t >= 12) & (t < 17))) * np.sin(2 * np.pi * 220 * t)
  start = highlights.find_highlights(audio.astype(np.float32), RATE, 5.0)
  assert abs(start - 12.0) < 0.1
  short = highlights.find_highlights(audio[:2 * RATE].astype(np.float32), RATE, 5.0)
  assert short == 0.0
