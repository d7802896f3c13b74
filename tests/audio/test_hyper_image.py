"""Hyper-image features against librosa 0.11.0, the cyclic fold against numpy, layout.

Tolerances (absolute; both sides compute the STFT in float32, so they agree
to float32 rounding of sums over 1025 bins and 128 bands, not to the bit):
  log-mel 2e-3 dB and MFCC 5e-3 (values up to 62 dB and 700; seen 2e-4, 1e-4),
  chroma and tonnetz 1e-5 (unit-scale; seen 2e-6, 3e-7), spectral contrast
  1e-2 dB (seen 2e-3), onset envelope 1e-4 (values up to 13; seen 6e-6),
  tempogram and cyclic tempogram 1e-5 (unit-max; seen 2e-7).

The audio is a real recording that ships with music21, resampled to 16 kHz,
with white noise 80 dB below full scale: soxr's resampling leaves the band
above 7.6 kHz empty, and there the valleys of spectral contrast (the quietest
2% of bins) would be float32 rounding noise in both implementations, which
disagree by dB (up to 4 dB seen; see
test_contrast_without_dither_agrees_below_the_empty_band). A recording
at its native rate usually has such a noise floor.
"""

import dataclasses
import functools
import os

import jax
import librosa
import music21
import numpy as np
import pytest
import scipy.fft
import soundfile
import soxr

from jplaylist.audio import hyper_image

RATE = 16_000
RECORDING = os.path.join(os.path.dirname(music21.__file__), "audioSearch", "test_audio.wav")
CONFIG = hyper_image.HyperImageConfig()
TOLERANCE = dict(log_mel=2e-3, mfcc=5e-3, chroma=1e-5, tonnetz=1e-5, spectral_contrast=1e-2,
                 cyclic_tempogram=1e-5)


@pytest.fixture(scope="module")
def recording():
  samples, rate = soundfile.read(RECORDING, dtype="float32")
  audio = soxr.resample(samples, rate, RATE).astype(np.float32)
  noise = 1e-4 * np.random.default_rng(0).standard_normal(len(audio))
  return (audio + noise).astype(np.float32)


@pytest.fixture(scope="module")
def clip(recording):
  return recording[:10 * RATE]


@pytest.fixture(scope="module")
def ours(clip):
  out = _jitted("features", CONFIG)(clip[None])
  return {name: np.asarray(value)[0].T for name, value in out.items()}  # librosa's [rows, frames]


@pytest.fixture(scope="module")
def theirs(clip):
  """librosa's features, each computed from the waveform by librosa itself."""
  chroma = librosa.feature.chroma_stft(y=clip, sr=RATE, tuning=0.0)
  onset_envelope = librosa.onset.onset_strength(y=clip, sr=RATE)
  tempogram = librosa.feature.tempogram(onset_envelope=onset_envelope, sr=RATE)
  return dict(
      chroma=chroma,
      tempogram=tempogram,
      onset_envelope=onset_envelope,
      log_mel=librosa.power_to_db(librosa.feature.melspectrogram(y=clip, sr=RATE)),
      mfcc=librosa.feature.mfcc(y=clip, sr=RATE),
      spectral_contrast=librosa.feature.spectral_contrast(y=clip, sr=RATE),
      tonnetz=librosa.feature.tonnetz(chroma=chroma))


@functools.lru_cache(maxsize=None)
def _jitted(function, config):
  """hyper_image.<function> under jit (eager dispatch of its many ops is slow)."""
  return jax.jit(functools.partial(getattr(hyper_image, function), sample_rate=RATE,
                                   config=config))


def _numpy_cyclic(tempogram, config=CONFIG):
  """The cyclic fold written independently: np.interp at each octave's tempo."""
  lags = np.arange(tempogram.shape[0])
  out = np.zeros((config.cyclic_bins, tempogram.shape[1]))
  for c in range(config.cyclic_bins):
    for o in range(config.cyclic_octaves):
      bpm = config.cyclic_min_bpm * 2.0 ** (o + c / config.cyclic_bins)
      lag = librosa.tempo_frequencies(2, sr=RATE, hop_length=config.hop_length)[1] / bpm
      out[c] += [np.interp(lag, lags, column) for column in tempogram.T]
  return out / config.cyclic_octaves


def test_constant_matrices_equal_librosa_and_scipy():
  np.testing.assert_allclose(hyper_image.chroma_filterbank(RATE, CONFIG.n_fft).T,
                             librosa.filters.chroma(sr=RATE, n_fft=CONFIG.n_fft, tuning=0.0),
                             atol=1e-7)
  identity = np.eye(CONFIG.num_mels)
  np.testing.assert_allclose(hyper_image.dct_matrix(CONFIG.num_mels, CONFIG.num_mfcc),
                             scipy.fft.dct(identity, type=2, norm="ortho")[:, :20], atol=1e-6)


@pytest.mark.parametrize("name", ["log_mel", "mfcc", "chroma", "tonnetz", "spectral_contrast"])
def test_feature_equals_librosa(ours, theirs, name):
  assert ours[name].shape == theirs[name].shape == (CONFIG.block_rows()[name], 313)
  np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=TOLERANCE[name])


def test_contrast_without_dither_agrees_below_the_empty_band():
  samples, rate = soundfile.read(RECORDING, dtype="float32")
  clip = soxr.resample(samples, rate, RATE).astype(np.float32)[:10 * RATE]
  ours = np.asarray(_jitted("features", CONFIG)(clip[None])["spectral_contrast"])[0].T
  theirs = librosa.feature.spectral_contrast(y=clip, sr=RATE)
  # Bands below 6.4 kHz hold signal; the top one (6.4-8 kHz) is empty above
  # soxr's cut-off, its valley rounding noise, and is not compared.
  np.testing.assert_allclose(ours[:-1], theirs[:-1], rtol=0, atol=TOLERANCE["spectral_contrast"])


def test_onset_envelope_and_tempogram_equal_librosa(ours, theirs):
  log_mel = ours["log_mel"].T[None]
  envelope = np.asarray(hyper_image.onset_strength(log_mel, CONFIG))[0]
  np.testing.assert_allclose(envelope, theirs["onset_envelope"], rtol=0, atol=1e-4)
  tempogram = np.asarray(hyper_image.tempogram(theirs["onset_envelope"][None], CONFIG))[0].T
  assert tempogram.shape == theirs["tempogram"].shape == (384, 313)
  np.testing.assert_allclose(tempogram, theirs["tempogram"], rtol=0, atol=1e-5)


def test_cyclic_tempogram_is_the_fold_of_librosas_tempogram(ours, theirs):
  # The fold, applied to librosa's tempogram, equals the numpy fold of it...
  folded = np.asarray(hyper_image.cyclic_tempogram(theirs["tempogram"].T[None], RATE, CONFIG))
  expected = _numpy_cyclic(theirs["tempogram"])
  np.testing.assert_allclose(folded[0].T, expected, rtol=0, atol=1e-6)
  # ...and the end-to-end JAX block equals it too.
  np.testing.assert_allclose(ours["cyclic_tempogram"], expected,
                             rtol=0, atol=TOLERANCE["cyclic_tempogram"])


def _clicks(bpm, seconds=10.0):
  clicks = np.zeros(int(seconds * RATE), np.float32)
  clicks[(np.arange(0, seconds, 60.0 / bpm) * RATE).astype(int)] = 1.0
  return clicks


def test_tempo_octaves_share_a_cyclic_class():
  # Class c reads the tempi with log2(bpm / 40) mod 1 = c / 15: 70, 140 and
  # 280 BPM (0.807 = 12.1 / 15) peak at class 12; 100 and 200 (4.8 / 15) at 5.
  clips = np.stack([_clicks(bpm) for bpm in (70, 140, 280, 100, 200)])
  cyclic = np.asarray(_jitted("features", CONFIG)(clips)["cyclic_tempogram"])
  profile = cyclic[:, 40:-40].mean(1)  # away from the ramps at the ends
  np.testing.assert_array_equal(profile.argmax(1), [12, 12, 12, 5, 5])


def _blocks_in_rows(config):
  offsets = np.cumsum([0] + list(config.block_rows().values()))
  return {name: slice(a, b) for name, a, b in zip(config.blocks, offsets[:-1], offsets[1:])}


@pytest.mark.parametrize("normalisation", ["standardise", "minmax"])
def test_layout_and_per_block_normalisation(recording, normalisation):
  config = hyper_image.HyperImageConfig(normalisation=normalisation)
  clips = np.stack([recording[:5 * RATE], 0.01 * recording[5 * RATE:10 * RATE]])
  image = np.asarray(_jitted("hyper_image", config)(clips))
  assert image.shape == (2, 188, config.num_frames(5 * RATE)) == (2, 188, 157)
  assert sum(config.block_rows().values()) == 188
  raw = _jitted("features", dataclasses.replace(config, normalisation="none"))(clips)
  for name, rows in _blocks_in_rows(config).items():
    block = image[:, rows]
    # Rows hold the feature in its own order: a per-clip affine map of it.
    expected = np.asarray(hyper_image.normalise_block(np.swapaxes(raw[name], 1, 2),
                                                      normalisation))
    np.testing.assert_allclose(block, expected, atol=1e-5)
    flat = block.reshape(2, -1)
    if normalisation == "standardise":
      np.testing.assert_allclose(flat.mean(1), 0.0, atol=1e-4)
      np.testing.assert_allclose(flat.std(1), 1.0, atol=1e-4)
    else:
      np.testing.assert_allclose(flat.min(1), 0.0, atol=1e-6)
      np.testing.assert_allclose(flat.max(1), 1.0, atol=1e-6)


def test_block_order_and_subsets_follow_the_config(recording):
  clip = recording[:3 * RATE]
  config = hyper_image.HyperImageConfig(blocks=("tonnetz", "chroma"))
  image = np.asarray(_jitted("hyper_image", config)(clip))
  assert image.shape == (18, 1 + 3 * RATE // 512)  # one clip in, [H, W] out
  full = np.asarray(_jitted("hyper_image", CONFIG)(clip))
  rows = _blocks_in_rows(CONFIG)
  np.testing.assert_allclose(image[:6], full[rows["tonnetz"]], atol=1e-5)
  np.testing.assert_allclose(image[6:], full[rows["chroma"]], atol=1e-5)


def test_a_batch_equals_its_clips_one_by_one(recording):
  # Different levels: the top_db floors and the normalisation are per clip.
  clips = np.stack([recording[:4 * RATE], 0.05 * recording[4 * RATE:8 * RATE],
                    np.zeros(4 * RATE, np.float32)])
  fn = _jitted("hyper_image", CONFIG)
  batch = np.asarray(fn(clips))
  assert np.all(np.isfinite(batch))
  for clip, row in zip(clips, batch):
    np.testing.assert_allclose(np.asarray(fn(clip[None]))[0], row, atol=1e-4)
  # Silence: every block but MFCC is constant, so 0; MFCC is c0 alone.
  rows = _blocks_in_rows(CONFIG)
  mfcc = batch[2, rows["mfcc"]]
  np.testing.assert_array_equal(np.delete(batch[2], np.r_[rows["mfcc"]], axis=0), 0.0)
  np.testing.assert_allclose(mfcc, np.broadcast_to(mfcc[:, :1], mfcc.shape), atol=1e-4)
  assert mfcc[0, 0] < -4.0  # c0 of a flat -100 dB spectrum, far below the rest


def test_bad_settings_name_the_field():
  silence = np.zeros((1, RATE), np.float32)
  with pytest.raises(ValueError, match="cyclic_min_bpm"):
    _jitted("features", hyper_image.HyperImageConfig(cyclic_min_bpm=4.0))(silence)
  with pytest.raises(ValueError, match="contrast_fmin"):
    jax.jit(lambda a: hyper_image.features(a, 8_000, CONFIG))(silence)
  with pytest.raises(ValueError, match="normalisation"):
    _jitted("hyper_image", hyper_image.HyperImageConfig(normalisation="zscore"))(silence)
