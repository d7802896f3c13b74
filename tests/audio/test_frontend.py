"""The JAX log-mel frontend against librosa, and SpecAugment."""

import dataclasses
import os

import chex
import jax
import jax.numpy as jnp
import librosa
import music21
import numpy as np
import pytest
import soundfile
import soxr

from jplaylist.audio import frontend

RATE = 16_000
# A real recording of music that ships with music21 (20 s, 44.1 kHz mono).
RECORDING = os.path.join(os.path.dirname(music21.__file__), "audioSearch",
                         "test_audio.wav")


@pytest.fixture(scope="module")
def recording():
  samples, rate = soundfile.read(RECORDING, dtype="float32")
  return soxr.resample(samples, rate, RATE).astype(np.float32)


def _librosa_db(y, config: frontend.FrontendConfig):
  power = librosa.feature.melspectrogram(
      y=y, sr=config.sample_rate, n_fft=config.n_fft, win_length=config.window_length,
      hop_length=config.hop_length, window="hann", center=config.center,
      pad_mode="constant", power=2.0, n_mels=config.num_mels, fmin=config.fmin,
      fmax=config.fmax, htk=config.htk, norm="slaney" if config.slaney_norm else None)
  return librosa.power_to_db(power, ref=1.0, amin=config.amin, top_db=None).T


def _native(config):
  return dataclasses.replace(config, num_frames=None)


def _compare(ours, reference, top_db=80.0):
  """Max |difference| in dB after flooring both at the same level.

  The floor is 80 dB below the reference's peak (librosa's usual `top_db`):
  float32 FFTs resolve about 7 significant digits of the peak, so cells
  further down carry rounding noise in either implementation.
  """
  floor_db = float(np.max(reference)) - top_db
  return float(np.max(np.abs(np.maximum(ours, floor_db) - np.maximum(reference, floor_db))))


@pytest.mark.parametrize("preset", ["resnet", "ast", "musicnn96"])
def test_log_mel_matches_librosa_on_recorded_music(recording, preset):
  config = _native(frontend.decode(preset))
  y = recording[:10 * RATE]
  ours = np.asarray(jax.jit(lambda a: frontend.log_mel(a, config))(y[None]))[0]
  reference = _librosa_db(y, config)
  assert ours.shape == reference.shape
  assert _compare(ours, reference) < 1e-3


@pytest.mark.parametrize("name,signal", [
    ("silence", np.zeros(RATE, np.float32)),
    ("clipping", np.clip(3 * np.sin(np.arange(RATE) * 0.05), -1, 1).astype(np.float32)),
    ("dc_offset", (0.5 + 0.1 * np.sin(np.arange(RATE) * 0.2)).astype(np.float32)),
    ("shorter_than_a_window", (0.3 * np.sin(np.arange(300) * 0.3)).astype(np.float32)),
    ("impulse", np.eye(1, 4000, 2000, dtype=np.float32)[0]),
])
def test_edge_cases_match_librosa(name, signal):
  del name
  config = _native(frontend.PRESETS["resnet"])
  ours = np.asarray(frontend.log_mel(signal[None], config))[0]
  reference = _librosa_db(signal, config)
  assert ours.shape == reference.shape
  assert np.all(np.isfinite(ours))
  assert _compare(ours, reference) < 1e-3


def test_uncentred_frames_match_librosa(recording):
  config = dataclasses.replace(_native(frontend.PRESETS["resnet"]), center=False)
  y = recording[:3 * RATE]
  ours = np.asarray(frontend.log_mel(y[None], config))[0]
  assert ours.shape[0] == 1 + (len(y) - 512) // 160
  assert _compare(ours, _librosa_db(y, config)) < 1e-3


@pytest.mark.parametrize("htk,norm,fmin,fmax", [
    (False, True, 0.0, None), (True, False, 0.0, None), (True, True, 30.0, 7000.0),
    (False, False, 50.0, 6000.0)])
def test_filterbank_matches_librosa(htk, norm, fmin, fmax):
  config = frontend.FrontendConfig(num_mels=96, htk=htk, slaney_norm=norm, fmin=fmin,
                                   fmax=fmax)
  reference = librosa.filters.mel(sr=RATE, n_fft=512, n_mels=96, fmin=fmin, fmax=fmax,
                                  htk=htk, norm="slaney" if norm else None).T
  np.testing.assert_allclose(frontend.mel_filterbank(config), reference,
                             atol=1e-6 * reference.max())


def test_ten_second_window_gives_exactly_400_frames(recording):
  for preset, mels in (("resnet", 64), ("ast", 128)):
    config = frontend.PRESETS[preset]
    assert config.window_length / RATE == 0.025 and config.hop_length / RATE == 0.010
    out = frontend.log_mel(recording[None, :config.window_samples], config)
    assert out.shape == (1, 400, mels)
    assert config.native_frames(config.window_samples) == 1001


def test_time_averaging_preserves_power_and_is_exact(recording):
  config = frontend.PRESETS["resnet"]
  y = recording[None, :config.window_samples]
  native = 10 ** (np.asarray(frontend.log_mel(y, _native(config)))[0] / 10)
  pooled = 10 ** (np.asarray(frontend.log_mel(y, config))[0] / 10)
  weights = frontend.time_pooling(1001, 400)
  np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=1e-6)
  np.testing.assert_allclose(weights.sum(), 1001 / (1001 / 400), rtol=1e-6)
  # Independent numpy computation: each output frame is the mean power over
  # its span of 2.5025 native frames, fractional frames weighted by overlap.
  edges = np.arange(401) * 1001 / 400
  for j in (0, 1, 199, 399):
    lo, hi = edges[j], edges[j + 1]
    total = sum(native[t] * (min(t + 1, hi) - max(t, lo)) for t in range(int(lo), int(np.ceil(hi))))
    np.testing.assert_allclose(pooled[j], total / (hi - lo), rtol=2e-4, atol=1e-9)


def test_batched_and_jit_compiled_once():
  config = frontend.PRESETS["resnet"]
  fn = jax.jit(chex.assert_max_traces(lambda a: frontend.log_mel(a, config), n=1))
  batch = np.random.default_rng(0).normal(size=(3, config.window_samples)).astype(np.float32)
  out = np.asarray(fn(batch))
  fn(batch + 1.0)
  single = np.asarray(fn(batch[1:2].repeat(3, axis=0)))[0]
  np.testing.assert_allclose(out[1], single, atol=1e-4)


def test_specaugment_masks_only_in_a_band_and_depends_on_the_rng():
  augment = frontend.SpecAugment(num_time_masks=2, max_time_width=30,
                                 num_freq_masks=2, max_freq_width=8)
  spec = jnp.asarray(np.random.default_rng(0).normal(size=(4, 400, 64)), jnp.float32)
  a = np.asarray(augment(spec, jax.random.key(0)))
  b = np.asarray(augment(spec, jax.random.key(0)))
  c = np.asarray(augment(spec, jax.random.key(1)))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  changed = a != np.asarray(spec)
  for example in range(4):
    rows = np.where(changed[example].all(axis=1))[0]   # fully masked frames
    cols = np.where(changed[example].all(axis=0))[0]   # fully masked mel bands
    assert len(rows) <= 2 * 30 and len(cols) <= 2 * 8
    # Every changed cell lies in a masked frame or a masked band.
    covered = np.zeros_like(changed[example])
    covered[rows] = True
    covered[:, cols] = True
    assert np.all(covered[changed[example]])
    assert np.allclose(a[example][changed[example]], float(np.mean(np.asarray(spec)[example])))
  assert changed.any()
