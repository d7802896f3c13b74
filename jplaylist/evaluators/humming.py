"""Query by playing or humming: a recording's melody line alone, as a query.

For a demo-corpus recording, `melody_notes` reads its composition's top part
from the music21 score (`jplaylist.data.demo.catalogue`) at the recording's
tempo and transposition, and `hum` sings it with one synthetic voice: a
whistle-like tone (a sine with a weak second harmonic, slight vibrato, soft
attack and release), nothing of the recording's instruments, harmony, room
or noise. `HumSettings` can put the singer off key (a random transposition
and detuning) and off tempo (a random tempo factor and per-note timing
jitter), as people hum.

The query is embedded like any recording and searched against the library;
the relevant answers are the library's recordings of the same composition
(`self_supervised.query_by_example`'s figures: mAP and R@10).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from jplaylist.data.demo import catalogue


@dataclasses.dataclass(frozen=True)
class HumSettings:
  """How the query is sung.

  Attributes:
    off_key_semitones: the melody moves by a uniform integer in
      [-k, k] semitones (0: in the recording's key).
    detune_cents: plus a uniform detuning in [-c, c] cents.
    off_tempo: the tempo is multiplied by a uniform factor in [1 - t, 1 + t].
    timing_jitter: each onset moves by a uniform share in [-j, j] of a beat.
    max_seconds: the query's length limit.
  """

  off_key_semitones: int = 0
  detune_cents: float = 0.0
  off_tempo: float = 0.0
  timing_jitter: float = 0.0
  max_seconds: float = 20.0


IN_TUNE = HumSettings()
# A listener humming from memory: up to 3 semitones off key and 30 cents off
# pitch, 15% off tempo, onsets a tenth of a beat early or late.
OFF_KEY_AND_TEMPO = HumSettings(off_key_semitones=3, detune_cents=30.0, off_tempo=0.15,
                                timing_jitter=0.1)


@functools.lru_cache(maxsize=None)
def _score(collection: str, composition: str) -> catalogue.Score:
  for work in catalogue.list_works(collection):
    if work.id == composition:
      return catalogue.parse(work)
  raise KeyError(f"no composition {composition!r} in the demo collection {collection!r}")


def melody_notes(attributes: dict[str, Any]) -> tuple[np.ndarray, float]:
  """(notes [n, 3] of (onset s, duration s, MIDI pitch), seconds per beat) of a
  demo recording's top part, at its tempo and transposition (no range fitting:
  the hummer sings the tune where it lies)."""
  score = _score(attributes["collection"], attributes["composition"])
  seconds_per_quarter = 60.0 / (float(attributes["tempo_bpm"]) * score.beat_quarters)
  notes = monophonic(np.asarray(score.parts[0], np.float64))
  notes[:, :2] *= seconds_per_quarter
  notes[:, 2] += float(attributes.get("transpose", 0))
  return notes, seconds_per_quarter * score.beat_quarters


def monophonic(notes: np.ndarray) -> np.ndarray:
  """One note at a time: the highest of notes sharing an onset, each cut at
  the next onset. notes: [n, 3] (onset, duration, pitch), any order."""
  notes = notes[np.lexsort((-notes[:, 2], notes[:, 0]))]
  notes = notes[np.r_[True, np.diff(notes[:, 0]) > 0]].copy()
  notes[:-1, 1] = np.minimum(notes[:-1, 1], np.diff(notes[:, 0]))
  return notes


def _fold_into_voice(pitches: np.ndarray, low: int = 55, high: int = 84) -> np.ndarray:
  """Octave shifts that bring a tune into a comfortable whistling range."""
  shifted = pitches + 12 * np.round((0.5 * (low + high) - np.median(pitches)) / 12)
  shifted = np.where(shifted < low, shifted + 12, shifted)
  return np.where(shifted > high, shifted - 12, shifted)


def hum(notes: np.ndarray, beat_seconds: float, sample_rate: int, settings: HumSettings,
        rng: np.random.Generator) -> np.ndarray:
  """The melody sung by one whistle-like voice: float32 [samples], peak 0.5.

  Args:
    notes: [n, 3] (onset s, duration s, MIDI pitch), as `melody_notes` gives.
    beat_seconds: one beat's length (the timing jitter's unit).
    sample_rate: of the output.
    settings: off key, off tempo, length.
    rng: every random choice.
  """
  if len(notes) == 0:
    raise ValueError("the melody has no notes")
  factor = 1.0 + rng.uniform(-settings.off_tempo, settings.off_tempo)
  onsets = notes[:, 0] / factor + rng.uniform(-settings.timing_jitter, settings.timing_jitter,
                                             len(notes)) * beat_seconds
  onsets = np.maximum(onsets - onsets.min(), 0.0)
  durations = notes[:, 1] / factor
  shift = (rng.integers(-settings.off_key_semitones, settings.off_key_semitones + 1)
           + rng.uniform(-settings.detune_cents, settings.detune_cents) / 100.0)
  pitches = _fold_into_voice(notes[:, 2]) + shift
  keep = onsets < settings.max_seconds
  length = int(sample_rate * min(settings.max_seconds,
                                 float(np.max(onsets[keep] + durations[keep])) + 0.2))
  out = np.zeros(length, np.float64)
  for onset, duration, pitch in zip(onsets[keep], durations[keep], pitches[keep]):
    start = int(onset * sample_rate)
    count = min(int(max(duration, 0.05) * sample_rate), length - start)
    if count <= 0:
      continue
    t = np.arange(count) / sample_rate
    frequency = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
    vibrato = 0.004 * np.sin(2 * np.pi * 5.5 * t)  # +-7 cents at 5.5 Hz
    phase = 2 * np.pi * frequency * np.cumsum(1.0 + vibrato) / sample_rate
    ramp = min(int(0.02 * sample_rate), count // 2)
    envelope = np.ones(count)
    if ramp:
      envelope[:ramp] = np.linspace(0.0, 1.0, ramp)
      envelope[-ramp:] = np.minimum(envelope[-ramp:], np.linspace(1.0, 0.0, ramp))
    out[start:start + count] += envelope * (np.sin(phase) + 0.15 * np.sin(2 * phase))
  peak = np.max(np.abs(out))
  return (0.5 * out / peak if peak > 0 else out).astype(np.float32)
