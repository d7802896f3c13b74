"""Onset autocorrelation against a direct numpy computation and click tracks."""

import numpy as np
import pytest

from jplaylist.audio import frontend
from jplaylist.audio import tempo

RATE = 16_000
FRAME_SECONDS = 0.025  # the ResNet preset: 400 frames per 10 s


def _numpy_reference(log_mel, valid, bands):
  out = []
  for x, v in zip(log_mel.astype(np.float64), valid):
    flux = np.concatenate([[0.0], np.maximum(np.diff(x, axis=0), 0).mean(1)])
    pair = v & np.concatenate([[False], v[:-1]])
    env = np.where(pair, flux, 0.0)
    env = np.where(pair, env - env[pair].mean(), 0.0) if pair.any() else env
    acf = []
    for lag in range(max(b for _, b in bands) + 1):
      both = pair[:len(pair) - lag] & pair[lag:]
      prod = (env[:len(env) - lag] * env[lag:])[both]
      acf.append(prod.mean() if both.any() else 0.0)
    acf = np.array(acf) / acf[0] if acf[0] > 0 else np.zeros(len(acf))
    out.append([acf[a:b + 1].max() for a, b in bands])
  return np.array(out)


def test_bands_are_contiguous_log_spaced_and_cover_the_range():
  bands = tempo.lag_bands(FRAME_SECONDS, 24)
  assert bands[0][0] == 8 and bands[-1][1] == 120  # 0.2 s and 3 s
  for (_, last), (first, _) in zip(bands[:-1], bands[1:]):
    assert first == last + 1
  widths = np.array([b - a + 1 for a, b in bands])
  assert widths[-1] > widths[0]


def test_equals_a_direct_numpy_computation_with_padding_masked():
  rng = np.random.default_rng(0)
  log_mel = rng.normal(size=(3, 200, 16)).astype(np.float32)
  valid = np.ones((3, 200), bool)
  valid[1, 150:] = False
  valid[2, 60:] = False
  bands = tempo.lag_bands(FRAME_SECONDS, 12, max_seconds=2.5)
  ours = np.asarray(tempo.onset_autocorrelation(log_mel, bands, valid))
  np.testing.assert_allclose(ours, _numpy_reference(log_mel, valid, bands), atol=2e-5)
  # What the padding holds does not matter.
  other = log_mel.copy()
  other[~valid] = 50.0
  np.testing.assert_allclose(tempo.onset_autocorrelation(other, bands, valid), ours, atol=1e-6)


@pytest.mark.parametrize("bpm", [60, 90, 120, 150])
def test_a_click_track_peaks_at_its_beat_period(bpm):
  clicks = np.zeros(10 * RATE, np.float32)
  period = 60.0 / bpm
  clicks[(np.arange(0, 10, period) * RATE).astype(int)] = 1.0
  log_mel = frontend.log_mel(clicks[None], "resnet")
  bands = tempo.lag_bands(FRAME_SECONDS, 24)
  features = np.asarray(tempo.onset_autocorrelation(log_mel, bands))[0]
  beat = period / FRAME_SECONDS
  holds_beat = [a - 0.5 <= beat <= b + 0.5 for a, b in bands]
  # 90 BPM is 26.7 frames: clicks fall 26 or 27 frames apart, which
  # smears the peak; integer periods give about 1.
  assert features[np.argmax(holds_beat)] > (0.9 if beat == int(beat) else 0.5)
  # Bands shorter than the beat period hold no periodicity.
  shorter = [i for i, (a, b) in enumerate(bands) if b < beat - 2]
  assert np.all(features[shorter] < 0.2)


def test_lags_longer_than_the_clip_are_refused():
  with pytest.raises(ValueError, match="lag 120"):
    tempo.onset_autocorrelation(np.zeros((1, 100, 8), np.float32),
                                tempo.lag_bands(FRAME_SECONDS, 24))
