"""Natural-language requests of a listening session: positive or negative.

The patent (WO2024043931A1) turns a user's request into a text example of the
session: "more flute" is a positive example (Y = 1) at the embedding of
"flute", "less piano" a negative one (Y = 0) at the embedding of "piano"
(`strategies.observe_text(..., label=label(request))`). This module decides
which, by a fixed rule on the leading words, and returns the text to embed.

The rule:

1. Normalise: lower-case, strip punctuation and spaces at both ends, collapse
   runs of whitespace into one space.
2. A leading negative cue makes the request negative and is removed:
   "less", "fewer", "no", "no more", "not", "not so", "not too", "without",
   "stop", "stop the", "avoid", "skip the", "enough", "enough of" (the longest
   cue that matches whole words wins, so "no more piano" -> "piano", not "more piano").
3. Otherwise the request is positive. The positive cues "nothing but",
   "only", "more", "switch to" and "play" are removed ("more flute" ->
   "flute"); any other text is kept whole ("something calmer" stays
   "something calmer": the embedding of the phrase carries the mood).
4. Punctuation and spaces left at the ends of the remainder are stripped.

Bad input raises ValueError naming it: a non-string, an empty or whitespace
text, a text that is only a cue ("less"), or a text over MAX_CHARS characters.
"""

from __future__ import annotations

import dataclasses
import string

MAX_CHARS = 200

# Longest first, so a two-word cue wins over its first word.
NEGATIVE_CUES = ("no more", "not so", "not too", "stop the", "skip the", "enough of", "less",
                 "fewer", "no", "not", "without", "stop", "avoid", "enough")
POSITIVE_CUES = ("nothing but", "switch to", "only", "more", "play")

_ENDS = string.punctuation + string.whitespace


@dataclasses.dataclass(frozen=True)
class Request:
  """A parsed request.

  Attributes:
    text: what to embed (normalised, cue removed), e.g. "piano".
    positive: True for "more of this", False for "less of this".
  """
  text: str
  positive: bool


def _normalise(text: str) -> str:
  return " ".join(text.split()).strip(_ENDS)


def _strip_cue(text: str, cues) -> str | None:
  """`text` without its leading cue (whole words), or None if none matches."""
  for cue in cues:
    if text == cue or text.startswith(cue + " "):
      return text[len(cue):].strip(_ENDS)
  return None


def parse_request(text: str) -> Request:
  """Parses a request ("less piano", "more flute", "something calmer").

  Args:
    text: the user's words.

  Returns:
    Request(text, positive) by the rule of the module docstring.

  Raises:
    ValueError: `text` is not a string, is over MAX_CHARS characters, or
      leaves nothing to embed (empty, whitespace, punctuation or a bare cue).
  """
  if not isinstance(text, str):
    raise ValueError(f"request must be a string, got {type(text).__name__} {text!r}")
  if len(text) > MAX_CHARS:
    raise ValueError(f"request is {len(text)} characters long; at most {MAX_CHARS} allowed")
  normal = _normalise(text.lower())
  remainder = _strip_cue(normal, NEGATIVE_CUES)
  positive = remainder is None
  if positive:
    remainder = _strip_cue(normal, POSITIVE_CUES)
    if remainder is None:
      remainder = normal
  if not remainder:
    raise ValueError(f"request {text!r} names nothing to play more or less of")
  return Request(text=remainder, positive=positive)


def label(request: Request) -> float:
  """Y of the request's text example: 1.0 positive, 0.0 negative."""
  return 1.0 if request.positive else 0.0
