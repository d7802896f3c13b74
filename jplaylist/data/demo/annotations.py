"""Text annotations of the four source kinds, written from known attributes.

Each demo recording gets short-form tags (SF), long-form sentences (LF),
playlist-title phrases (PL) and AudioSet ontology labels (ASET), generated
from its structured attributes with several templates and synonyms per
source so that text-side generalisation can be measured.

Wording varies by synonyms (instruments, tempo, mode, mood, families) and by
word order (templates that open with the ensemble, the mood, the key or the
tempo). Templates come in two sets: `LF_TEMPLATES`/`PL_TEMPLATES` for the
training split, and `HELDOUT_LF_TEMPLATES`/`HELDOUT_PL_TEMPLATES`, which
`annotate(..., heldout=True)` uses for the long-form and playlist texts of
evaluation splits (validation and the test splits) and `heldout_queries` for
text-to-music queries: a trained model never sees their wording.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from jplaylist.data.demo import instruments as instruments_lib

Attributes = dict[str, Any]

TEMPO_WORDS = {
    "slow": ("slow", "adagio", "slow tempo", "unhurried", "largo", "lento",
             "slow-paced"),
    "fast": ("fast", "allegro", "up-tempo", "quick", "brisk", "presto",
             "fast-paced"),
}
TEMPO_ADJECTIVES = {
    "slow": ("slow", "unhurried", "leisurely", "stately", "slow-moving"),
    "fast": ("fast", "lively", "brisk", "quick", "rapid"),
}
MODE_WORDS = {"major": ("major", "major key", "major-key"),
              "minor": ("minor", "minor key", "minor-key")}

# Mood follows from what the rendition is, tempo class and mode, as
# listeners describe such music:
#
#   tempo  mode   mood   words
#   slow   minor  sad    sad, melancholy, mournful, wistful, sorrowful
#   slow   major  calm   calm, peaceful, serene, gentle, tranquil
#   fast   minor  tense  tense, dramatic, restless, urgent, agitated
#   fast   major  happy  happy, energetic, cheerful, joyful, upbeat
MOODS = {
    ("slow", "minor"): "sad", ("slow", "major"): "calm",
    ("fast", "minor"): "tense", ("fast", "major"): "happy",
}
MOOD_WORDS = {
    "sad": ("sad", "melancholy", "mournful", "wistful", "sorrowful"),
    "calm": ("calm", "peaceful", "serene", "gentle", "tranquil"),
    "tense": ("tense", "dramatic", "restless", "urgent", "agitated"),
    "happy": ("happy", "energetic", "cheerful", "joyful", "upbeat"),
}
MOOD_ACTIVITIES = {
    "sad": ("Rainy Days", "Late Nights", "Reflection"),
    "calm": ("Sleep", "Relaxing", "Reading"),
    "tense": ("Workouts", "Epic Moments", "Drama"),
    "happy": ("Good Mornings", "Cooking", "Road Trips"),
}
MOOD_AUDIOSET = {"sad": "Sad music", "calm": "Tender music",
                 "happy": "Happy music", "tense": "Exciting music"}
DANCE_GENRES = ("reel", "jig", "hornpipe", "strathspey", "polka", "waltz",
                "schottische", "clog", "slide", "fling", "galop", "mazurka",
                "polonaise", "rag", "set dance")
STYLE_AUDIOSET = {
    "Baroque": ("Classical music",), "Renaissance": ("Classical music",),
    "Medieval": ("Classical music",), "Classical": ("Classical music",),
    "Romantic": ("Classical music",),
    "Celtic": ("Folk music", "Traditional music"),
    "Irish traditional": ("Folk music", "Traditional music"),
    "German folk": ("Folk music", "Traditional music"),
    "Chinese folk": ("Traditional music", "Music of Asia"),
}


def mood_of(attributes: Attributes) -> str:
  """The mood word class of a recording, from its tempo class and mode (MOODS)."""
  key = (attributes["tempo_class"], attributes["mode"])
  if key not in MOODS:
    raise ValueError(f"no mood for tempo_class {key[0]!r} and mode {key[1]!r}; "
                     f"known: {sorted(MOODS)}")
  return MOODS[key]


def _pick(rng: np.random.Generator, options):
  return options[int(rng.integers(len(options)))]


def _instrument_word(name: str, rng: np.random.Generator) -> str:
  instrument = instruments_lib.INSTRUMENTS[name]
  return _pick(rng, (instrument.name,) + instrument.synonyms)


def ensemble_phrase(attributes: Attributes, rng: np.random.Generator) -> str:
  """Words for who plays: 'a solo flute', 'flute and strings', 'a string quartet'."""
  ensemble = attributes["ensemble"]
  lead = _instrument_word(attributes["lead_instrument"], rng)
  if attributes["solo"]:
    if ensemble in ("choir", "string orchestra"):
      return _pick(rng, (f"a {lead}", f"a {lead} alone"))
    return _pick(rng, (f"a solo {lead}", f"{lead} alone", f"an unaccompanied {lead}",
                       f"solo {lead}"))
  if ensemble == "string quartet":
    return _pick(rng, ("a string quartet", "two violins, viola and cello",
                       "a quartet of strings"))
  if ensemble in ("woodwind quartet", "brass quartet"):
    family = ensemble.split()[0]
    return _pick(rng, (f"a {ensemble}", f"a {family} ensemble",
                       f"four {family} players"))
  others = [n for n in attributes["instruments"] if n != attributes["lead_instrument"]]
  if all(instruments_lib.INSTRUMENTS[n].family == "bowed strings" for n in others):
    accompaniment = _pick(rng, ("strings", "a string trio", "string accompaniment"))
  else:
    accompaniment = " and ".join(_instrument_word(n, rng) for n in others)
  return _pick(rng, (f"{lead} and {accompaniment}", f"{lead} with {accompaniment}",
                     f"a {lead} accompanied by {accompaniment}"))


def _slots(attributes: Attributes, rng: np.random.Generator) -> dict[str, str]:
  mood = mood_of(attributes)
  return {
      "tempo": _pick(rng, TEMPO_ADJECTIVES[attributes["tempo_class"]]),
      "tempo_word": _pick(rng, TEMPO_WORDS[attributes["tempo_class"]]),
      "mood": _pick(rng, MOOD_WORDS[mood]),
      "style": attributes["style"],
      "genre": attributes["genre"],
      "ensemble": ensemble_phrase(attributes, rng),
      "lead": _instrument_word(attributes["lead_instrument"], rng),
      "key": attributes["key"],
      "mode": attributes["mode"],
      "mode_word": _pick(rng, MODE_WORDS[attributes["mode"]]),
      "metre": attributes["metre"],
      "composer": attributes.get("composer") or "a traditional composer",
      "activity": _pick(rng, MOOD_ACTIVITIES[mood]),
      "family": _pick(rng, instruments_lib.FAMILY_WORDS[
          instruments_lib.INSTRUMENTS[attributes["lead_instrument"]].family]),
  }


def _cap(text: str) -> str:
  return text[:1].upper() + text[1:]


def _title_case(text: str) -> str:
  return " ".join(w[:1].upper() + w[1:] for w in text.split())


Template = Callable[[dict[str, str], Attributes], str]

LF_TEMPLATES: tuple[Template, ...] = (
    lambda s, a: f"A {s['tempo']} {s['style']} {s['genre']} played on {s['ensemble']} in {s['key']}.",
    lambda s, a: f"{_cap(s['ensemble'])} performs a {s['mood']} {s['genre']} by {s['composer']}.",
    lambda s, a: f"This {s['style']} {s['genre']} is arranged for {s['ensemble']}; it is in {s['metre']} time and {s['key']}.",
    lambda s, a: f"{_cap(s['mood'])} {s['style']} music in a {s['mode']} key, with the {s['lead']} carrying the melody.",
    lambda s, a: f"Listen to {s['ensemble']} playing a {s['tempo']}, {s['mood']} piece from the {s['style']} repertoire.",
    lambda s, a: (f"An arrangement of \"{a['title']}\" for {s['ensemble']}." if a.get("title")
                  else f"An arrangement of a {s['style']} {s['genre']} for {s['ensemble']}."),
    lambda s, a: f"The {s['lead']} leads this {s['tempo']} {s['genre']} at a {s['tempo_word']} pace.",
    lambda s, a: f"A {s['mood']}, {s['mode']}-key {s['genre']} for {s['ensemble']}, {s['tempo']} throughout.",
    lambda s, a: f"{_cap(s['tempo'])} and {s['mood']}: {s['ensemble']} in a {s['style']} {s['genre']}.",
    lambda s, a: f"In {s['key']}, {s['ensemble']} plays a {s['mood']} {s['genre']} at a {s['tempo_word']} pace.",
    lambda s, a: f"A {s['genre']} in a {s['mode_word']}, {s['tempo']} and {s['mood']}, for {s['ensemble']}.",
    lambda s, a: f"{_cap(s['style'])} {s['family']} music: a {s['tempo']} {s['genre']} with a {s['mood']} feel.",
)
PL_TEMPLATES: tuple[Template, ...] = (
    lambda s, a: _title_case(f"{s['mood']} {s['style']} {s['lead']}"),
    lambda s, a: _title_case(f"{s['lead']} for {s['activity']}"),
    lambda s, a: _title_case(f"{s['style']} {s['genre']} essentials"),
    lambda s, a: _title_case(f"{s['tempo']} {s['family']} favourites"),
    lambda s, a: (f"Best of {a['composer']}" if a.get("composer")
                  else _title_case(f"traditional {s['genre']}s")),
    lambda s, a: _title_case(f"{s['mood']} {s['genre']}s"),
    lambda s, a: _title_case(f"{s['style']} music for {s['activity']}"),
    lambda s, a: _title_case(f"{s['mode']} key {s['lead']}"),
    lambda s, a: _title_case(f"{s['tempo']} and {s['mood']} {s['style']}"),
    lambda s, a: _title_case(f"{s['lead']}: {s['mood']} {s['genre']}s"),
)
# Never used for the corpus: wording a trained model has not seen.
HELDOUT_LF_TEMPLATES: tuple[Template, ...] = (
    lambda s, a: f"Music for {s['ensemble']}: a {s['mood']} {s['style']} {s['genre']} in {s['key']}.",
    lambda s, a: f"I want to hear {s['ensemble']} playing something {s['mood']} and {s['tempo']}.",
    lambda s, a: f"Something {s['tempo']} in the {s['style']} style where {s['ensemble']} plays a {s['genre']}.",
    lambda s, a: f"Find me a {s['mode']}-key {s['genre']} performed by {s['ensemble']}.",
    lambda s, a: f"{_cap(s['mood'])} and {s['tempo']}, this {s['genre']} from the {s['style']} tradition features {s['ensemble']}.",
    lambda s, a: f"A recording of {s['ensemble']}, {s['tempo_word']} and {s['mood']}, in {s['key']}.",
    lambda s, a: f"Here {s['ensemble']} takes a {s['style']} {s['genre']} at a {s['tempo']} pace; it sounds {s['mood']}.",
)
HELDOUT_PL_TEMPLATES: tuple[Template, ...] = (
    lambda s, a: _title_case(f"{s['lead']} vibes"),
    lambda s, a: _title_case(f"a {s['mood']} evening of {s['style']} music"),
    lambda s, a: _title_case(f"{s['style']} mood: {s['mood']}"),
    lambda s, a: _title_case(f"{s['tempo']} {s['lead']} sessions"),
    lambda s, a: _title_case(f"feeling {s['mood']}: {s['tempo']} {s['family']}"),
    lambda s, a: _title_case(f"{s['mode_word']} {s['style']} for {s['activity']}"),
)


def short_form(attributes: Attributes, rng: np.random.Generator) -> str:
  """Comma-separated tags, a random subset in random order."""
  lead = attributes["lead_instrument"]
  tags = [_instrument_word(lead, rng)]
  others = [n for n in attributes["instruments"] if n != lead]
  tags += [_instrument_word(n, rng) for n in others[:2]]
  if attributes["solo"]:
    tags.append("solo")
  elif attributes["ensemble"].endswith("quartet"):
    tags.append("quartet")
  optional = [attributes["style"].lower(), attributes["genre"],
              _pick(rng, TEMPO_WORDS[attributes["tempo_class"]]),
              _pick(rng, MODE_WORDS[attributes["mode"]]),
              _pick(rng, MOOD_WORDS[mood_of(attributes)]),
              _pick(rng, instruments_lib.FAMILY_WORDS[
                  instruments_lib.INSTRUMENTS[lead].family]),
              attributes["metre"]]
  if attributes.get("composer"):
    optional.append(attributes["composer"].split()[-1].lower())
  chosen = rng.choice(len(optional), size=int(rng.integers(2, len(optional) + 1)),
                      replace=False)
  tags += [optional[i] for i in chosen]
  order = rng.permutation(len(tags))
  return ", ".join(dict.fromkeys(tags[i] for i in order))


def audioset_labels(attributes: Attributes) -> list[str]:
  """Every AudioSet ontology class that describes the recording."""
  labels = []
  for name in attributes["instruments"]:
    labels.append(instruments_lib.INSTRUMENTS[name].audioset)
  for family in attributes["instrument_families"]:
    labels.append(instruments_lib.FAMILY_AUDIOSET[family])
  labels += STYLE_AUDIOSET[attributes["style"]]
  if attributes["ensemble_size"] > 1:
    labels.append("Musical ensemble")
  if attributes["ensemble"] == "choir":
    labels.append("A capella")
  if attributes.get("sacred"):
    labels.append("Christian music")
  if attributes["genre"] in DANCE_GENRES:
    labels.append("Dance music")
  mood = mood_of(attributes)
  if mood in MOOD_AUDIOSET:
    labels.append(MOOD_AUDIOSET[mood])
  return list(dict.fromkeys(labels))


def annotate(attributes: Attributes, rng: np.random.Generator, *,
             num_sf: int = 3, num_lf: int = 3, num_pl: int = 2,
             drop_probability: float = 0.0,
             heldout: bool = False) -> dict[str, list[str]]:
  """Text annotations of a recording by source kind.

  Args:
    attributes: the recording's structured facts (see `demo.corpus`).
    rng: source of wording choices.
    num_sf, num_lf, num_pl: annotations per kind (ASET gets every label).
    drop_probability: chance that each of LF, PL and ASET is left out, as real
      corpora lack some sources for some recordings. SF is always kept.
    heldout: write LF and PL from the held-out templates (evaluation splits).
  """
  lf_templates = HELDOUT_LF_TEMPLATES if heldout else LF_TEMPLATES
  pl_templates = HELDOUT_PL_TEMPLATES if heldout else PL_TEMPLATES
  texts = {
      "SF": list(dict.fromkeys(short_form(attributes, rng) for _ in range(num_sf))),
      "LF": _from_templates(lf_templates, attributes, rng, num_lf),
      "PL": _from_templates(pl_templates, attributes, rng, num_pl),
      "ASET": audioset_labels(attributes),
  }
  for source in ("LF", "PL", "ASET"):
    if rng.random() < drop_probability:
      del texts[source]
  return texts


def heldout_queries(attributes: Attributes, rng: np.random.Generator,
                    num: int = 2) -> dict[str, list[str]]:
  """LF and PL texts from templates the corpus never uses."""
  return {"LF": _from_templates(HELDOUT_LF_TEMPLATES, attributes, rng, num),
          "PL": _from_templates(HELDOUT_PL_TEMPLATES, attributes, rng, num)}


def _from_templates(templates, attributes, rng, num) -> list[str]:
  chosen = rng.choice(len(templates), size=min(num, len(templates)), replace=False)
  return list(dict.fromkeys(templates[i](_slots(attributes, rng), attributes)
                            for i in chosen))

