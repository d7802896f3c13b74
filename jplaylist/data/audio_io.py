"""Reading and checking audio files for the dataset builder.

Everything here is host-side numpy. Audio is decoded with libsndfile (through
`soundfile`, which reads WAV, FLAC, OGG/Vorbis, Opus and MP3), checked, reduced
to mono, resampled with soxr and stored as int16 at one fixed sample rate, the
way the patent's training reads fixed-rate waveforms.

A file that fails a check raises `InvalidAudio` with a short machine-readable
`reason` (one of `REASONS`) so that the builder can count skipped files by
reason instead of crashing.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import soundfile
import soxr

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")


def audio_files(folder: str) -> list[tuple[str, str]]:
  """(id, path) of the audio files under `folder`, sorted; an id is the path
  relative to `folder` (the ids of a folder index)."""
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"not a folder: {folder}")
  return [(os.path.relpath(os.path.join(root, name), folder), os.path.join(root, name))
          for root, _, names in sorted(os.walk(folder)) for name in sorted(names)
          if name.lower().endswith(AUDIO_EXTENSIONS)]

# Reasons a file is rejected, in the order the checks run.
REASONS = (
    "unreadable",     # the decoder could not open or decode the file
    "empty",          # zero bytes, or a valid header with zero frames
    "multi_channel",  # more than one channel and down-mixing is off
    "non_finite",     # NaN or infinite samples (float formats)
    "too_short",      # shorter than the minimum duration
    "silent",         # peak amplitude below the silence threshold
)


class InvalidAudio(Exception):
  """A file that cannot become a training record."""

  def __init__(self, reason: str, detail: str):
    assert reason in REASONS, reason
    super().__init__(f"{reason}: {detail}")
    self.reason = reason
    self.detail = detail


@dataclasses.dataclass(frozen=True)
class AudioChecks:
  """Acceptance rules for one recording.

  Attributes:
    sample_rate: rate the stored waveform is resampled to, in Hz.
    min_duration_s: recordings shorter than this are rejected.
    silence_peak: a recording whose peak |x| (full scale 1.0) is below this is
      rejected as silent; 1e-4 is -80 dBFS.
    downmix: average the channels of multi-channel files instead of rejecting
      them. Off by default: a multi-channel file in a mono corpus is more often
      a mistake than a choice.
  """

  sample_rate: int = 16_000
  min_duration_s: float = 1.0
  silence_peak: float = 1e-4
  downmix: bool = False


def decode(path: str) -> tuple[np.ndarray, int]:
  """Decodes a file to float32 samples.

  Returns:
    (samples [num_frames, num_channels] float32, sample_rate).

  Raises:
    InvalidAudio: with reason "empty" or "unreadable".
  """
  if os.path.getsize(path) == 0:
    raise InvalidAudio("empty", "file has zero bytes")
  try:
    samples, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
  except Exception as e:  # libsndfile raises several types; all mean the same here.
    raise InvalidAudio("unreadable", f"{type(e).__name__}: {e}") from None
  return samples, int(sample_rate)


def to_mono_int16(samples: np.ndarray, sample_rate: int,
                  checks: AudioChecks) -> np.ndarray:
  """Checks decoded samples and returns the stored form.

  Args:
    samples: [num_frames, num_channels] float32, full scale 1.0.
    sample_rate: rate of `samples`, Hz.
    checks: acceptance rules and the target rate.

  Returns:
    [num_frames'] int16 at `checks.sample_rate`.

  Raises:
    InvalidAudio: if any check fails.
  """
  num_frames, num_channels = samples.shape
  if num_frames == 0:
    raise InvalidAudio("empty", "no audio frames")
  if num_channels > 1:
    if not checks.downmix:
      raise InvalidAudio("multi_channel", f"{num_channels} channels")
  if not np.all(np.isfinite(samples)):
    bad = int(np.size(samples) - np.count_nonzero(np.isfinite(samples)))
    raise InvalidAudio("non_finite", f"{bad} NaN or infinite samples")
  duration = num_frames / sample_rate
  if duration < checks.min_duration_s:
    raise InvalidAudio(
        "too_short", f"{duration:.3f} s < {checks.min_duration_s} s")
  mono = samples.mean(axis=1) if num_channels > 1 else samples[:, 0]
  peak = float(np.max(np.abs(mono)))
  if peak < checks.silence_peak:
    raise InvalidAudio("silent", f"peak {peak:.2e} < {checks.silence_peak:.0e}")
  if sample_rate != checks.sample_rate:
    mono = soxr.resample(mono, sample_rate, checks.sample_rate, quality="HQ")
    peak = float(np.max(np.abs(mono)))
  if peak > 1.0:
    # Float files may exceed full scale; scaling keeps the waveform, clipping
    # would not.
    mono = mono / peak
  return np.round(np.clip(mono, -1.0, 1.0) * 32767.0).astype(np.int16)


def load(path: str, checks: AudioChecks) -> np.ndarray:
  """Decodes, checks and converts one file; see `to_mono_int16`."""
  samples, sample_rate = decode(path)
  return to_mono_int16(samples, sample_rate, checks)


def int16_to_float(audio: np.ndarray) -> np.ndarray:
  """Stored int16 samples to float32 in [-1, 1)."""
  return audio.astype(np.float32) * np.float32(1.0 / 32768.0)
