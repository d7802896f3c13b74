"""What makes a transition between two tracks smooth: tempo, key, embedding.

A DJ moves between tracks whose tempi a pitch fader can match, whose keys
sit close on the circle of fifths, and which sound alike. The cost of going
from track i to track j is

  cost = tempo_weight     * tempo_term      (one unit per `tempo_tolerance`)
       + key_weight       * key_steps       (one unit per Camelot-wheel step)
       + embedding_weight * (1 - cos(e_i, e_j))

  tempo_term = min over k in {-1, 0, 1} of |log2(bpm_j / bpm_i) + k|
               / log2(1 + tempo_tolerance)
      Tempo is heard on a ratio scale, and a track at half or double the
      tempo mixes as well as one at the same tempo (k = +-1). The tolerance
      is the +-8 % range of a turntable's pitch fader, so a term of 1 is the
      most a DJ can match without time stretching.
  key_steps  = fifths(relative major of key_i, relative major of key_j)
               + (1 if the modes differ)
      fifths() is the distance on the circle of fifths (0-6). Every minor key
      is placed at its relative major, so the moves the Camelot wheel calls
      harmonic (same key; one fifth up or down; relative major/minor) cost 0
      or 1, and C major to C minor costs 4.
  embedding  cosine distance of the L2-normalised audio embeddings (0-2).

Default weights make one unit of cost = a full pitch-fader tempo mismatch =
two Camelot steps = a cosine distance of 0.5. On 12 demo-library tracks
(`launch.dj_mix`, configs/dj_mix.py: 12 tracks, seed 0; it prints these figures) the
weighted terms over all pairs have medians tempo 1.29, key 2.00, embedding
1.76 (5th-95th percentiles 0.08-5.30, 0-3, 0.92-2.32; the demo model of
2026-12-03): none drowns the others. An unknown
key costs `UNKNOWN_KEY_STEPS` (the mean distance between two random keys),
an unknown tempo (none in the index, and 0 BPM from the beat tracker, as on
silence) one tolerance. The cost is symmetric, which
`ordering.two_opt` relies on.

Tempo and key come from a library's attributes when it has them; otherwise
`estimate_key` matches a pitch-class profile (`audio/chroma.py`) against
Krumhansl & Kessler's key profiles, and `mix.track_beats` runs librosa's
beat tracker.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import numpy as np

from jplaylist.audio import chroma
from jplaylist.models import key_profile

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# Mean key_steps over two keys drawn uniformly from the 24: 3 fifths + 1/2.
UNKNOWN_KEY_STEPS = 3.5


@dataclasses.dataclass(frozen=True)
class Key:
  """A key: tonic pitch class (0 = C) and mode ("major" or "minor")."""
  tonic: int
  mode: str

  def __str__(self) -> str:
    return f"{PITCH_CLASSES[self.tonic]} {self.mode}"

  @property
  def relative_major(self) -> int:
    return self.tonic if self.mode == "major" else (self.tonic + 3) % 12


def parse_key(text: str | None) -> Key | None:
  """"D major", "F# minor", "F-sharp minor", "B-flat", "B- major", "c#m", "CM" -> Key.

  Mode words (major, minor, maj, min) are read in any case; a single letter
  is case-sensitive: "M" is major, "m" minor.

  Spellings of music21 (and so of the demo corpus: "E-flat major") are read
  too. None or "" -> None.

  Raises:
    ValueError: text that is not a key.
  """
  if not text:
    return None
  spelled = re.sub(r"[\s-]*sharp", "#", str(text).strip(), flags=re.IGNORECASE)
  spelled = re.sub(r"[\s-]*flat", "b", spelled, flags=re.IGNORECASE)
  spelled = re.sub(r"^([A-Ga-g])-", r"\1b", spelled)   # music21: "B-" is B flat
  # Words in any case; the single letter is case-sensitive, as in chord
  # symbols: "CM" is C major, "Cm" C minor.
  match = re.fullmatch(r"([A-Ga-g])\s*([#b♯♭]*)\s*((?i:major|minor|maj|min)|M|m|)", spelled)
  if not match:
    raise ValueError(f"not a key: {text!r} (expected e.g. 'F# minor' or 'Bb major')")
  letter, accidentals, mode = match.groups()
  tonic = (_LETTERS[letter.upper()] + sum(1 if a in "#♯" else -1 for a in accidentals)) % 12
  minor = mode == "m" or mode.lower() in ("minor", "min")
  return Key(tonic, "minor" if minor else "major")


def key_of_attributes(attributes: dict) -> Key | None:
  """A key from library attributes: "key", else "tonic" and "mode"; None if absent."""
  if attributes.get("key"):
    return parse_key(str(attributes["key"]))
  if attributes.get("tonic"):
    return parse_key(f"{attributes['tonic']} {attributes.get('mode') or 'major'}")
  return None


def estimate_key(audio: np.ndarray, sample_rate: int) -> Key:
  """Krumhansl-Schmuckler key of a waveform: the best of 24 profile correlations.

  Args:
    audio: [num_samples] float waveform.
    sample_rate: Hz (the chroma STFT is taken at this rate).
  """
  config = dataclasses.replace(chroma.ChromaConfig(), sample_rate=int(sample_rate))
  # The chroma STFT takes host numpy on purpose (launchers disallow implicit copies).
  with jax.transfer_guard("allow"):
    profile = np.asarray(chroma.pitch_class_profile(np.asarray(audio, np.float32)[None],
                                                    config))[0]
  scores = key_correlations(profile)
  best = int(np.argmax(scores))
  return Key(best % 12, ("major", "minor")[best // 12])


def key_correlations(profile: np.ndarray) -> np.ndarray:
  """[12] pitch-class profile -> [24] Pearson correlations: majors C..B, then minors."""
  templates = np.stack([np.roll(template, tonic)
                        for template in (key_profile.KK_MAJOR, key_profile.KK_MINOR)
                        for tonic in range(12)])
  templates = templates - templates.mean(1, keepdims=True)
  centred = profile - profile.mean()
  norms = np.linalg.norm(templates, axis=1) * max(np.linalg.norm(centred), 1e-12)
  return templates @ centred / norms


def fifths_distance(pitch_class_a, pitch_class_b) -> np.ndarray:
  """Steps between two pitch classes on the circle of fifths, 0-6."""
  steps = (7 * (np.asarray(pitch_class_a) - np.asarray(pitch_class_b))) % 12
  return np.minimum(steps, 12 - steps)


def key_steps(a: Key | None, b: Key | None) -> float:
  """Camelot-wheel steps between two keys (module docstring)."""
  if a is None or b is None:
    return UNKNOWN_KEY_STEPS
  return float(fifths_distance(a.relative_major, b.relative_major) + (a.mode != b.mode))


def tempo_distance(bpm: np.ndarray) -> np.ndarray:
  """[N] tempi -> [N, N] |log2 ratio|, half and double tempo allowed.

  A tempo that is not a positive finite number is unknown (librosa's beat
  tracker says 0.0 for silence), and every distance to it is NaN.
  """
  bpm = np.asarray(bpm, np.float64)
  known = np.isfinite(bpm) & (bpm > 0)
  octaves = np.log2(np.where(known, bpm, np.nan))
  ratio = octaves[:, None] - octaves[None, :]
  return np.min(np.abs(ratio[..., None] + np.array([-1.0, 0.0, 1.0])), axis=-1)


@dataclasses.dataclass(frozen=True)
class CostWeights:
  """Weights of the transition cost (module docstring).

  Attributes:
    tempo: per tolerance width of tempo mismatch.
    key: per Camelot step.
    embedding: per unit of cosine distance.
    tempo_tolerance: the relative tempo change that makes one tempo unit.
  """
  tempo: float = 1.0
  key: float = 0.5
  embedding: float = 2.0
  tempo_tolerance: float = 0.08


def cost_terms(tempo_bpm: np.ndarray, keys: list[Key | None], embeddings: np.ndarray,
               weights: CostWeights = CostWeights()) -> dict[str, np.ndarray]:
  """Weighted transition cost terms between every pair of tracks.

  Args:
    tempo_bpm: [N] tempi; NaN, inf or <= 0 is unknown and costs one
      tolerance (a weight of `weights.tempo`) to or from any track.
    keys: N keys (None: unknown).
    embeddings: [N, d] audio embeddings (normalised here).
    weights: the CostWeights.

  Returns:
    {"tempo", "key", "embedding", "total"}: [N, N] float64, symmetric, each
    already multiplied by its weight; the diagonal is 0.
  """
  count = len(tempo_bpm)
  if not count == len(keys) == len(embeddings):
    raise ValueError(f"{count} tempi, {len(keys)} keys, {len(embeddings)} embeddings")
  tempo = tempo_distance(tempo_bpm) / np.log2(1.0 + weights.tempo_tolerance)
  tempo = np.where(np.isnan(tempo), 1.0, tempo)  # unknown: one tolerance
  steps = np.array([[key_steps(a, b) for b in keys] for a in keys]).reshape(count, count)
  unit = np.asarray(embeddings, np.float64)
  unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
  cosine = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
  terms = {"tempo": weights.tempo * tempo, "key": weights.key * steps,
           "embedding": weights.embedding * cosine}
  for value in terms.values():
    np.fill_diagonal(value, 0.0)
    value[:] = 0.5 * (value + value.T)  # exact symmetry despite float round-off
  terms["total"] = terms["tempo"] + terms["key"] + terms["embedding"]
  return terms
