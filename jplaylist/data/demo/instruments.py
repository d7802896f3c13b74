"""Instruments and ensembles of the demo corpus.

Each instrument is a General MIDI program (0-based, as SF2 presets number
them) with a playable range, a family, its AudioSet ontology class and the
words people use for it. An ensemble assigns instruments to the parts of a
score, part by part, so that every recording's instrumentation is known
exactly.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Instrument:
  name: str                # "flute"
  program: int             # General MIDI program, 0-based
  family: str              # one of FAMILIES
  low: int                 # lowest comfortable MIDI pitch
  high: int                # highest comfortable MIDI pitch
  audioset: str            # AudioSet class name (must exist in the ontology)
  synonyms: tuple[str, ...] = ()   # other words for it in text
  plural: str = ""         # "flutes"; default name + "s"
  polyphonic: bool = False  # can play a whole score alone

  @property
  def plural_name(self) -> str:
    return self.plural or self.name + "s"


FAMILIES = ("woodwind", "bowed strings", "keyboard", "plucked strings", "brass",
            "voice", "mallet percussion")

FAMILY_AUDIOSET = {
    "woodwind": "Wind instrument, woodwind instrument",
    "bowed strings": "Bowed string instrument",
    "keyboard": "Keyboard (musical)",
    "plucked strings": "Plucked string instrument",
    "brass": "Brass instrument",
    "voice": "Vocal music",
    "mallet percussion": "Mallet percussion",
}

FAMILY_WORDS = {
    "woodwind": ("woodwind", "woodwinds", "wind instruments"),
    "bowed strings": ("strings", "bowed strings", "string instruments"),
    "keyboard": ("keyboard", "keys", "keyboard instruments"),
    "plucked strings": ("plucked strings", "plucked string instruments"),
    "brass": ("brass", "brass instruments", "horns"),
    "voice": ("vocals", "voices", "singing"),
    "mallet percussion": ("mallet percussion", "tuned percussion"),
}

_INSTRUMENTS = (
    Instrument("flute", 73, "woodwind", 60, 96, "Flute", ("transverse flute",)),
    Instrument("oboe", 68, "woodwind", 58, 91, "Oboe"),
    Instrument("clarinet", 71, "woodwind", 50, 89, "Clarinet"),
    Instrument("bassoon", 70, "woodwind", 34, 72, "Bassoon"),
    Instrument("alto saxophone", 65, "woodwind", 49, 81, "Alto saxophone",
               ("alto sax", "sax")),
    Instrument("violin", 40, "bowed strings", 55, 100, "Violin, fiddle", ("fiddle",)),
    Instrument("viola", 41, "bowed strings", 48, 88, "Bowed string instrument"),
    Instrument("cello", 42, "bowed strings", 36, 76, "Cello", ("violoncello",)),
    Instrument("double bass", 43, "bowed strings", 28, 60, "Double bass",
               ("contrabass", "upright bass")),
    Instrument("string section", 48, "bowed strings", 36, 96, "String section",
               ("string ensemble", "string orchestra"), plural="string sections",
               polyphonic=True),
    Instrument("piano", 0, "keyboard", 21, 108, "Piano", ("acoustic piano",),
               polyphonic=True),
    Instrument("harpsichord", 6, "keyboard", 29, 89, "Harpsichord", (),
               polyphonic=True),
    Instrument("organ", 19, "keyboard", 24, 96, "Organ", ("church organ", "pipe organ"),
               polyphonic=True),
    Instrument("accordion", 21, "keyboard", 41, 89, "Accordion", ("squeezebox",),
               polyphonic=True),
    Instrument("guitar", 24, "plucked strings", 40, 84, "Acoustic guitar",
               ("acoustic guitar", "classical guitar", "nylon-string guitar"),
               polyphonic=True),
    Instrument("harp", 46, "plucked strings", 24, 103, "Harp", ("concert harp",),
               polyphonic=True),
    Instrument("trumpet", 56, "brass", 55, 82, "Trumpet"),
    Instrument("french horn", 60, "brass", 41, 77, "French horn", ("horn",)),
    Instrument("trombone", 57, "brass", 40, 72, "Trombone"),
    Instrument("tuba", 58, "brass", 28, 58, "Brass instrument"),
    Instrument("choir", 52, "voice", 40, 81, "Choir",
               ("chorus", "vocal ensemble", "voices"), plural="choirs",
               polyphonic=True),
    Instrument("marimba", 12, "mallet percussion", 45, 96, "Marimba, xylophone",
               (), polyphonic=True),
)

INSTRUMENTS: dict[str, Instrument] = {i.name: i for i in _INSTRUMENTS}


@dataclasses.dataclass(frozen=True)
class Ensemble:
  """Who plays what.

  Parts are sorted from highest to lowest (by median pitch). `lead` plays the
  highest part; `accompaniment` cycles over the remaining parts from the top
  (its last entry takes the bass). A solo of a monophonic instrument plays the
  top part alone; a polyphonic solo instrument plays every part.

  Attributes:
    name: "flute with strings".
    lead: instrument of the top part.
    accompaniment: instruments of the other parts, top to bottom.
    solo: one player only.
  """

  name: str
  lead: str
  accompaniment: tuple[str, ...] = ()
  solo: bool = False

  def instruments(self, num_parts: int) -> list[str]:
    """Instrument per part (top to bottom) for a score of `num_parts` parts."""
    lead = INSTRUMENTS[self.lead]
    if self.solo:
      return [self.lead] * (num_parts if lead.polyphonic else 1)
    rest = list(self.accompaniment)
    below = []
    for i in range(num_parts - 1):
      if i == num_parts - 2:
        below.append(rest[-1])       # the bass part takes the lowest voice
      else:
        below.append(rest[min(i, len(rest) - 1)])
    return [self.lead] + below

  @property
  def players(self) -> tuple[str, ...]:
    return (self.lead,) + self.accompaniment


def _solo(name: str) -> Ensemble:
  return Ensemble(f"solo {name}", name, solo=True)


ENSEMBLES: dict[str, Ensemble] = {e.name: e for e in (
    _solo("flute"), _solo("violin"), _solo("cello"), _solo("clarinet"),
    _solo("oboe"), _solo("trumpet"), _solo("alto saxophone"),
    _solo("piano"), _solo("organ"), _solo("harpsichord"), _solo("guitar"),
    _solo("harp"), _solo("accordion"), _solo("marimba"),
    Ensemble("flute with strings", "flute", ("violin", "viola", "cello")),
    Ensemble("flute with piano", "flute", ("piano",)),
    Ensemble("flute with guitar", "flute", ("guitar",)),
    Ensemble("violin with piano", "violin", ("piano",)),
    Ensemble("clarinet with piano", "clarinet", ("piano",)),
    Ensemble("oboe with strings", "oboe", ("violin", "viola", "cello")),
    Ensemble("trumpet with organ", "trumpet", ("organ",)),
    Ensemble("string quartet", "violin", ("violin", "viola", "cello")),
    Ensemble("woodwind quartet", "flute", ("oboe", "clarinet", "bassoon")),
    Ensemble("brass quartet", "trumpet", ("trumpet", "french horn", "tuba")),
    Ensemble("choir", "choir", solo=True),
    Ensemble("string orchestra", "string section", solo=True),
)}
