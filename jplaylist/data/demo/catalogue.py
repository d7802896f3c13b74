"""Compositions of the demo corpus, taken from the music21 corpus.

A `Collection` is a group of compositions that share a style and genre (Bach
chorales, Palestrina masses, Irish fiddle tunes, ...). `list_works` finds the
compositions of a collection without parsing them; `parse` reads one into a
plain `Score`: its parts as note lists in quarter-note time, with its metre
and key. Melody-only sources (fiddle tunes, folk songs) are harmonised with
three lower voices so that any ensemble can play them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re

import numpy as np


@dataclasses.dataclass(frozen=True)
class Collection:
  name: str                      # "bach_chorales"
  corpus_dirs: tuple[str, ...]   # music21 corpus folders it reads from
  style: str                     # "Baroque"
  genre: str                     # "chorale"; overridden by tune type when found
  composer: str | None           # None: "traditional" or from the score
  melody_only: bool = False      # one monophonic part: harmonise it
  sacred: bool = False
  vocal: bool = False            # written for voices
  file_pattern: str = r".*"      # regex on the file name
  exclude_pattern: str = r"^$"


COLLECTIONS: dict[str, Collection] = {c.name: c for c in (
    Collection("bach_chorales", ("bach",), "Baroque", "chorale", "J. S. Bach",
               sacred=True, vocal=True, file_pattern=r"^bwv.*\.mxl$"),
    Collection("palestrina_masses", ("palestrina",), "Renaissance", "mass",
               "Palestrina", sacred=True, vocal=True),
    Collection("monteverdi_madrigals", ("monteverdi",), "Renaissance", "madrigal",
               "Monteverdi", vocal=True),
    Collection("trecento_songs", ("trecento",), "Medieval", "song", None,
               vocal=True),
    Collection("celtic_fiddle_tunes", ("ryansMammoth",), "Celtic", "fiddle tune",
               None, melody_only=True),
    Collection("irish_tunes", ("oneills1850",), "Irish traditional", "tune", None,
               melody_only=True),
    Collection("german_folk_songs", ("essenFolksong",), "German folk", "folk song",
               None, melody_only=True,
               file_pattern=r"^(altdeu|ballad|boehme|dva|erk|fink|kinder|zuccal).*"),
    Collection("chinese_folk_songs", ("essenFolksong",), "Chinese folk",
               "folk song", None, melody_only=True, file_pattern=r"^han\d"),
    Collection("classical_quartets", ("haydn", "mozart", "beethoven"), "Classical",
               "quartet movement", None, file_pattern=r".*\.mxl$",
               exclude_pattern=r"opus13[23]"),
    Collection("romantic_pieces", ("schumann_robert", "schumann_clara", "chopin",
                                   "schubert", "beach", "joplin"),
               "Romantic", "character piece", None),
)}

# Tune types named in fiddle-tune and folk titles.
_TUNE_TYPES = ("reel", "jig", "hornpipe", "strathspey", "polka", "waltz", "march",
               "schottische", "clog", "slide", "quickstep", "fling", "galop",
               "mazurka", "air", "lament", "set dance", "polonaise", "rag")

_COMPOSER_NAMES = {
    "haydn": "Haydn", "mozart": "Mozart", "beethoven": "Beethoven",
    "schumann_robert": "Robert Schumann", "schumann_clara": "Clara Schumann",
    "chopin": "Chopin", "schubert": "Schubert", "beach": "Amy Beach",
    "joplin": "Scott Joplin",
}


@dataclasses.dataclass(frozen=True)
class Work:
  """One composition: a corpus file and, for collections of tunes, its number."""

  collection: str
  path: str          # path relative to the music21 corpus root
  number: int | None = None

  @property
  def id(self) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "-", os.path.splitext(self.path)[0]).strip("-")
    return f"{stem}-{self.number}" if self.number is not None else stem


@dataclasses.dataclass
class Score:
  """A parsed composition, parts ordered from highest to lowest.

  parts: per part a float array [num_notes, 3] of (onset, duration, midi pitch)
    in quarter notes.
  """

  work: Work
  title: str | None    # None when the corpus names it only by catalogue
  composer: str | None
  genre: str
  parts: list[np.ndarray]
  metre: str            # "3/4"
  metre_class: str      # "simple triple"
  beat_quarters: float  # length of one beat in quarter notes
  bar_quarters: float
  tonic: str            # pitch-class name, e.g. "F#"
  mode: str             # "major" or "minor"
  length_quarters: float


@functools.lru_cache(maxsize=None)
def corpus_root() -> str:
  import music21  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.dirname(music21.__file__), "corpus")


def _tune_numbers(path: str) -> list[int]:
  """X: reference numbers of the tunes in an ABC file (cheap, no parse)."""
  with open(path, encoding="latin-1") as f:
    return [int(m.group(1)) for m in re.finditer(r"^X:\s*(\d+)", f.read(), re.M)]


@functools.lru_cache(maxsize=None)
def list_works(collection_name: str) -> tuple[Work, ...]:
  """Every composition of a collection, in a fixed order."""
  collection = COLLECTIONS[collection_name]
  root = corpus_root()
  works = []
  for folder in collection.corpus_dirs:
    for dirpath, _, files in sorted(os.walk(os.path.join(root, folder))):
      for name in sorted(files):
        if (not re.search(collection.file_pattern, name)
            or re.search(collection.exclude_pattern, name)
            or not name.endswith((".mxl", ".xml", ".musicxml", ".krn", ".abc"))):
          continue
        relpath = os.path.relpath(os.path.join(dirpath, name), root)
        numbers = _tune_numbers(os.path.join(dirpath, name)) if name.endswith(".abc") else []
        if len(numbers) > 1:
          works.extend(Work(collection_name, relpath, n) for n in numbers)
        else:
          works.append(Work(collection_name, relpath))
  return tuple(works)


def _tune_type(title: str, default: str) -> str:
  lowered = title.lower()
  for tune_type in _TUNE_TYPES:
    if re.search(rf"\b{tune_type}s?\b", lowered):
      return tune_type
  return default


def display_title(raw: str) -> str | None:
  """A title fit for text, or None for catalogue names such as 'bwv304'."""
  if re.match(r"^(bwv|movement|madrigal\.|pmfc|polonaise_|mazurka\d|h\d)", raw,
              re.I):
    return None
  title = re.sub(r"\s*--.*$", "", raw).strip()  # "LARRY GROGAN'S -- JIG"
  if title.isupper():
    title = re.sub(r"'S\b", "'s", title.title())
  return title or None


def parse(work: Work, max_quarters: float | None = None) -> Score:
  """Parses a work into a Score (optionally only its first `max_quarters`)."""
  from music21 import converter, harmony  # pylint: disable=g-import-not-at-top
  collection = COLLECTIONS[work.collection]
  path = os.path.join(corpus_root(), work.path)
  kwargs = {"number": work.number} if work.number is not None else {}
  # forceSource: neither read nor write music21's pickle cache, a fixed folder
  # under /tmp that it writes in place: two builds at once (test workers, two
  # users) could read each other's half-written pickles. Each build parses
  # each work once, so the cache would only save time across builds.
  stream = converter.parse(path, forceSource=True, **kwargs)
  if hasattr(stream, "scores"):  # an Opus despite the number: take its first
    stream = stream.scores[0]
  time_signature = stream.recurse().getElementsByClass("TimeSignature").first()
  if time_signature is None:
    from music21 import meter  # pylint: disable=g-import-not-at-top
    time_signature = meter.TimeSignature("4/4")
  parts = []
  for part in (stream.parts or [stream]):
    notes = _part_notes(part, max_quarters, harmony.ChordSymbol)
    if len(notes):
      parts.append(notes)
  if not parts:
    raise ValueError(f"{work.id}: no notes")
  # Parts that enter late in the excerpt (a cantata's instruments after the
  # choir, say) would leave a solo of the top part silent: keep those that
  # play from the first quarter of it.
  span = max(float(np.max(p[:, 0] + p[:, 1])) for p in parts)
  early = [p for p in parts if p[0, 0] < 0.25 * span]
  parts = early or parts
  parts.sort(key=lambda p: -np.median(p[:, 2]))
  key = stream.analyze("key")
  title = (stream.metadata.title if stream.metadata and stream.metadata.title
           else os.path.splitext(os.path.basename(work.path))[0])
  composer = collection.composer
  if composer is None:
    composer = _COMPOSER_NAMES.get(work.path.split(os.sep)[0])
  metre_class = " ".join(
      w.lower() for w in (time_signature.beatDivisionCountName,
                          time_signature.beatCountName)).strip()
  length = max(float(np.max(p[:, 0] + p[:, 1])) for p in parts)
  score = Score(
      work=work, title=display_title(str(title)), composer=composer,
      genre=(_tune_type(str(title), collection.genre)
             if collection.melody_only or collection.name == "romantic_pieces"
             else collection.genre),
      parts=parts, metre=time_signature.ratioString, metre_class=metre_class,
      beat_quarters=float(time_signature.beatDuration.quarterLength),
      bar_quarters=float(time_signature.barDuration.quarterLength),
      tonic=key.tonic.name.replace("-", "b"), mode=key.mode,
      length_quarters=length)
  if collection.melody_only or len(parts) == 1:
    score.parts = harmonise(parts[0], score)
  return score


def _part_notes(part, max_quarters: float | None, chord_symbol_type) -> np.ndarray:
  """(onset, duration, pitch) rows of one part, tied notes merged into one."""
  notes: list[list[float]] = []
  open_ties: dict[int, int] = {}  # midi pitch -> row of the note it continues
  for element in part.flatten().notes:
    if isinstance(element, chord_symbol_type) or element.quarterLength <= 0:
      continue
    onset = float(element.offset)
    duration = float(element.quarterLength)
    members = element.notes if element.isChord else (element,)
    for member in members:
      pitch = member.pitch.midi
      tie = (member.tie or element.tie)
      tie_type = tie.type if tie is not None else None
      if tie_type in ("continue", "stop") and pitch in open_ties:
        row = notes[open_ties[pitch]]
        row[1] = onset + duration - row[0]
        if tie_type == "stop":
          del open_ties[pitch]
        continue
      if max_quarters is not None and onset >= max_quarters:
        continue
      notes.append([onset, duration, float(pitch)])
      if tie_type == "start":
        open_ties[pitch] = len(notes) - 1
  notes.sort()
  return np.asarray(notes, dtype=np.float64).reshape(-1, 3)


_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def pitch_class(name: str) -> int:
  value = _PITCH_CLASS[name[0]]
  for accidental in name[1:]:
    value += {"#": 1, "b": -1}[accidental]
  return value % 12


def harmonise(melody: np.ndarray, score: Score) -> list[np.ndarray]:
  """Adds alto, tenor and bass voices to a melody, one triad per half bar.

  The chord of each span is the diatonic triad (I, IV, V, vi or ii in major;
  i, iv, V, VI, III in minor) whose tones cover the most melody duration in
  that span; voices hold its tones in close position below the melody.
  """
  tonic = pitch_class(score.tonic)
  if score.mode == "minor":
    roots, qualities = (0, 5, 7, 8, 3), ("m", "m", "M", "M", "M")
  else:
    roots, qualities = (0, 5, 7, 9, 2), ("M", "M", "M", "m", "m")
  triads = [{(tonic + r) % 12, (tonic + r + (3 if q == "m" else 4)) % 12,
             (tonic + r + 7) % 12} for r, q in zip(roots, qualities)]
  span = score.bar_quarters / 2 if score.bar_quarters >= 3 else score.bar_quarters
  end = float(np.max(melody[:, 0] + melody[:, 1]))
  alto, tenor, bass = [], [], []
  start = 0.0
  while start < end:
    stop = min(start + span, end)
    weights = np.zeros(12)
    for onset, duration, pitch in melody:
      overlap = min(stop, onset + duration) - max(start, onset)
      if overlap > 0:
        weights[int(pitch) % 12] += overlap
    scores = [sum(weights[pc] for pc in triad) for triad in triads]
    best = int(np.argmax(scores))  # ties go to the earlier, more tonal chord
    root = (tonic + roots[best]) % 12
    chord = sorted(triads[best])
    bass.append((start, stop - start, 36 + root + (12 if root < 4 else 0)))
    # Close position around the octave below middle C.
    voicing = sorted(48 + pc for pc in chord)
    tenor.append((start, stop - start, voicing[0]))
    alto.append((start, stop - start, voicing[1] if len(voicing) > 1 else voicing[0]))
    start = stop
  return [melody] + [np.asarray(v, dtype=np.float64) for v in (alto, tenor, bass)]
