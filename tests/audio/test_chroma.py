"""Pitch-class profiles against numpy, librosa and pure tones."""

import os

import librosa
import music21
import numpy as np
import pytest
import soundfile
import soxr

from jplaylist.audio import chroma

RATE = 16_000
RECORDING = os.path.join(os.path.dirname(music21.__file__), "audioSearch", "test_audio.wav")


def _tones(*hz, seconds=2.0):
  t = np.arange(int(RATE * seconds)) / RATE
  return sum(np.sin(2 * np.pi * f * t) for f in hz)[None].astype(np.float32)


def test_filterbank_spreads_each_bin_in_range_over_the_classes():
  config = chroma.ChromaConfig()
  bank = chroma.chroma_filterbank(config)
  hz = np.linspace(0, RATE / 2, config.n_fft // 2 + 1)
  inside = (hz >= config.fmin) & (hz <= config.fmax)
  np.testing.assert_allclose(bank[inside].sum(1), 1.0, rtol=1e-5)
  assert not bank[~inside].any()
  # A bin at 440 Hz is mostly pitch class 9 (A).
  assert bank[np.argmin(abs(hz - 440.0))].argmax() == 9


@pytest.mark.parametrize("midi", [45, 52, 60, 61, 67, 74, 81, 90])
def test_a_pure_tone_lands_on_its_pitch_class(midi):
  hz = 440.0 * 2 ** ((midi - 69) / 12)
  profile = np.asarray(chroma.pitch_class_profile(_tones(hz)))[0]
  assert profile.argmax() == midi % 12
  # The 256-ms Hann window's main lobe is +-7.8 Hz: below about C3 a tone
  # leaks into its neighbouring classes, never further.
  neighbours = profile[[(midi - 1) % 12, midi % 12, (midi + 1) % 12]].sum()
  assert neighbours > 0.99 and profile[midi % 12] > (0.9 if midi >= 60 else 0.6)
  np.testing.assert_allclose(profile.sum(), 1.0, rtol=1e-5)


def test_equals_a_numpy_stft_with_the_same_filterbank():
  config = chroma.ChromaConfig()
  rng = np.random.default_rng(0)
  audio = rng.normal(size=(3, 3 * RATE + 123)).astype(np.float32)
  audio[2, RATE:] = 0.0  # zero padding adds nothing
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(config.n_fft) / config.n_fft)
  expected = []
  for row in audio.astype(np.float64):
    starts = range(0, len(row) - config.n_fft + 1, config.hop_length)
    power = np.stack([abs(np.fft.rfft(row[s:s + config.n_fft] * window)) ** 2 for s in starts])
    per_class = (power @ chroma.chroma_filterbank(config)).sum(0)
    expected.append(per_class / per_class.sum())
  np.testing.assert_allclose(chroma.pitch_class_profile(audio, config), expected, rtol=2e-4,
                             atol=1e-6)


def test_silence_is_uniform_and_short_clips_are_padded():
  out = np.asarray(chroma.pitch_class_profile(np.zeros((2, 1000), np.float32)))
  np.testing.assert_allclose(out, 1 / 12)


def test_real_recording_agrees_with_librosa_chroma():
  samples, rate = soundfile.read(RECORDING, dtype="float32")
  audio = soxr.resample(samples, rate, RATE).astype(np.float32)
  config = chroma.ChromaConfig()
  ours = np.asarray(chroma.pitch_class_profile(audio[None], config))[0]
  # librosa's own chroma filters (Gaussian in log frequency, octave weighting):
  # another construction of the same quantity, so close but not equal.
  power = np.abs(librosa.stft(audio, n_fft=config.n_fft, hop_length=config.hop_length,
                              window="hann", center=False)) ** 2
  theirs = librosa.feature.chroma_stft(S=power, sr=RATE, n_fft=config.n_fft,
                                       tuning=0.0, norm=None).sum(1)
  theirs = theirs / theirs.sum()
  assert np.corrcoef(ours, theirs)[0, 1] > 0.9
  assert ours.argmax() == theirs.argmax()
