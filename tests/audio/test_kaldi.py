"""Kaldi fbank front-end: equal to transformers' ASTFeatureExtractor on a real recording.

References:
- `transformers.ASTFeatureExtractor`. torchaudio is not installable next to
  the pinned torch, so the extractor takes its numpy path
  (`audio_utils.spectrogram` with a symmetric Hann window, Kaldi mel scale,
  triangles in mel space, DC removal, pre-emphasis 0.97), which transformers
  keeps equal to its `torchaudio.compliance.kaldi.fbank` path (their own
  tests compare the two).
- `_kaldi_numpy`: a float64 transcription of Kaldi's C++ (feature-window.cc,
  mel-computations.cc), frame by frame and filter by filter, sharing no code
  with either.

The recording is music21's `audioSearch/test_audio.wav` (20 s of a real
instrument recording at 44.1 kHz, shipped in the music21 wheel), resampled to
16 kHz once; both sides get the same samples.

Tolerance: 1e-4 on the normalised features ((log fbank - mean) / (2 std),
i.e. about 1e-3 in natural-log energy), everywhere on the recording; the
largest difference measured is 3.5e-5 (float32 FFTs, in the lowest mel band,
which holds ~1e-7 of a frame's energy). Definitional slips measured on the
same recording: a periodic Hann window 0.08, no DC removal 0.34, povey window
0.67, no pre-emphasis 0.93, fmin 0 instead of 20 Hz 1.2.
"""

import functools
import os

import jax
import music21
import numpy as np
import pytest
import soundfile
import soxr
import transformers
from transformers import audio_utils

from configs import mulan
from jplaylist.audio import frontend
from jplaylist.audio import kaldi

ATOL = 1e-4
# Kaldi's narrowest low filters hold no FFT bin (their energy is floored at
# eps), in torchaudio as here; HF warns about it on every extractor it builds.
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero")
SAMPLE_RATE = 16_000


@functools.lru_cache(maxsize=1)
def recording() -> np.ndarray:
  """music21's test recording, mono float32 at 16 kHz, [319878] samples."""
  path = os.path.join(os.path.dirname(music21.__file__), "audioSearch", "test_audio.wav")
  waveform, rate = soundfile.read(path, dtype="float32")
  return soxr.resample(waveform, rate, SAMPLE_RATE).astype(np.float32)


def _hf_features(waveforms, max_length, **kwargs):
  extractor = transformers.ASTFeatureExtractor(max_length=max_length, **kwargs)
  return extractor(list(waveforms), sampling_rate=SAMPLE_RATE,
                   return_tensors="np")["input_values"]


def _ours(waveforms, config):
  return np.asarray(jax.jit(kaldi.fbank, static_argnums=1)(np.stack(waveforms), config))


def test_whole_recording_matches_hf_at_native_frames():
  waveform = recording()
  config = kaldi.KaldiConfig(num_frames=None)
  ours = _ours([waveform], config)
  native = 1 + (len(waveform) - 400) // 160
  assert ours.shape == (1, native, 128)
  reference = _hf_features([waveform], max_length=native)
  np.testing.assert_allclose(ours, reference, rtol=0, atol=ATOL)
  # Real audio, not silence: the features spread over the normalised range.
  assert ours.std() > 0.2 and np.ptp(ours) > 1.5


def test_audioset_preset_pads_and_truncates_like_hf():
  # A 10-s window gives 998 frames, padded to 1024 (two windows in a batch);
  # a 12-s waveform gives 1198, truncated.
  waveform = recording()
  windows = [waveform[:160_000], waveform[80_000:240_000]]
  ours = np.asarray(frontend.log_mel(np.stack(windows), "ast_kaldi"))
  assert ours.shape == (2, 1024, 128)
  np.testing.assert_allclose(ours, _hf_features(windows, max_length=1024),
                             rtol=0, atol=ATOL)
  # Padding frames hold HF's normalised zero, -mean / (2 std), not log(eps).
  np.testing.assert_allclose(ours[:, 998:], -kaldi.AUDIOSET_MEAN / (2 * kaldi.AUDIOSET_STD),
                             rtol=1e-6)
  long = waveform[:192_000]
  ours_long = _ours([long], kaldi.KaldiConfig())
  np.testing.assert_allclose(ours_long, _hf_features([long], max_length=1024),
                             rtol=0, atol=ATOL)


def test_other_statistics_and_unnormalised():
  waveform = recording()[:48_000]
  config = kaldi.KaldiConfig(num_frames=None, mean=-3.0, std=2.0)
  reference = _hf_features([waveform], max_length=298, mean=-3.0, std=2.0)
  np.testing.assert_allclose(_ours([waveform], config), reference, rtol=0, atol=ATOL)
  raw = _ours([waveform], kaldi.KaldiConfig(num_frames=None, mean=None, std=None))
  raw_reference = _hf_features([waveform], max_length=298, do_normalize=False)
  # The same tolerance in natural-log units (x 2 std of AudioSet).
  np.testing.assert_allclose(raw, raw_reference, rtol=0,
                             atol=2 * kaldi.AUDIOSET_STD * ATOL)


def test_filterbank_and_window_match_hf():
  config = kaldi.KaldiConfig()
  reference = audio_utils.mel_filter_bank(
      num_frequency_bins=257, num_mel_filters=128, min_frequency=20,
      max_frequency=8000, sampling_rate=SAMPLE_RATE, norm=None, mel_scale="kaldi",
      triangularize_in_mel_space=True)
  np.testing.assert_allclose(kaldi.mel_filterbank(config), reference, rtol=0, atol=1e-6)
  np.testing.assert_allclose(kaldi.window(config),
                             audio_utils.window_function(400, "hann", periodic=False),
                             rtol=0, atol=1e-7)


def _kaldi_numpy(waveform, *, frame_length=400, frame_shift=160, padded=512,
                 num_bins=128, sample_rate=16_000, low_freq=20.0, preemph=0.97,
                 window_power=1.0):
  """Kaldi's ComputeFeatures for fbank, transcribed from its C++, in float64."""
  waveform = waveform.astype(np.float64)
  num_frames = 1 + (len(waveform) - frame_length) // frame_shift
  a = 2.0 * np.pi / (frame_length - 1)
  window = np.array([(0.5 - 0.5 * np.cos(a * i)) ** window_power
                     for i in range(frame_length)])
  # MelBanks: triangles between neighbouring centres, strictly inside (left, right).
  mel_of = lambda hz: 1127.0 * np.log(1.0 + hz / 700.0)
  num_fft_bins = padded // 2
  mel_low, mel_high = mel_of(low_freq), mel_of(sample_rate / 2)
  delta = (mel_high - mel_low) / (num_bins + 1)
  banks = np.zeros((num_bins, num_fft_bins))
  for b in range(num_bins):
    left, center, right = (mel_low + k * delta for k in (b, b + 1, b + 2))
    for i in range(num_fft_bins):
      mel = mel_of(sample_rate / padded * i)
      if left < mel < right:
        banks[b, i] = ((mel - left) / (center - left) if mel <= center
                       else (right - mel) / (right - center))
  out = np.zeros((num_frames, num_bins))
  for f in range(num_frames):
    frame = waveform[f * frame_shift:f * frame_shift + frame_length].copy()
    frame -= frame.sum() / frame_length
    for i in range(frame_length - 1, 0, -1):
      frame[i] -= preemph * frame[i - 1]
    frame[0] -= preemph * frame[0]
    frame *= window
    spectrum = np.fft.fft(frame, n=padded)[:num_fft_bins]
    power = spectrum.real ** 2 + spectrum.imag ** 2
    energies = banks @ power
    out[f] = np.log(np.maximum(energies, np.finfo(np.float32).eps))
  return out


@pytest.mark.parametrize("window_type,window_power", [("hanning", 1.0), ("povey", 0.85)])
def test_matches_independent_kaldi_transcription(window_type, window_power):
  waveform = recording()[32_000:64_000]
  config = kaldi.KaldiConfig(num_frames=None, mean=None, std=None, window_type=window_type)
  reference = _kaldi_numpy(waveform, window_power=window_power)
  ours = _ours([waveform], config)[0]
  assert ours.shape == reference.shape == (198, 128)
  # Natural-log units: ATOL on the normalised scale is 2 * 4.57 * ATOL here.
  np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-3)


def test_batched_jit_equals_one_by_one_and_traces_once():
  waveform = recording()
  config = kaldi.KaldiConfig(window_seconds=2.0, num_frames=None)
  windows = np.stack([waveform[i * 32_000:(i + 1) * 32_000] for i in range(4)])
  traces = []

  def fbank(audio):
    traces.append(audio.shape)
    return kaldi.fbank(audio, config)

  fn = jax.jit(fbank)
  batched = np.asarray(fn(windows))
  for i in range(4):
    np.testing.assert_allclose(batched[i:i + 1], np.asarray(fn(windows[i:i + 1])),
                               rtol=0, atol=1e-6)
  assert traces == [(4, 32_000), (1, 32_000)]  # one trace per batch shape


def test_presets_and_configs():
  # The old Slaney-dB preset is unchanged for existing runs.
  old = frontend.decode("ast")
  assert isinstance(old, frontend.FrontendConfig)
  assert (old.num_mels, old.num_frames) == (128, 400)
  new = frontend.decode("ast_kaldi")
  assert new == kaldi.KaldiConfig()
  assert (new.num_mels, new.num_frames, new.hop_length, new.window_samples) == (
      128, 1024, 160, 160_000)
  assert mulan.get_config("audio=ast").model.frontend == "ast_kaldi"
  assert mulan.get_config("audio=resnet50").model.frontend == "resnet"
  with pytest.raises(ValueError, match="at least 400 samples"):
    kaldi.fbank(np.zeros((1, 399), np.float32))
  with pytest.raises(ValueError, match="window_type"):
    kaldi.KaldiConfig(window_type="hann")
