"""The patent's text filters: rules, then a learned music-descriptive classifier.

Text mined from the web comes with navigation boilerplate, links, markup and
sentences about anything but the music. The builder (`builder.build(...,
text_filter=TextFilter(...))`) passes every annotation of every record
through `TextFilter.apply`, which keeps it or names why not:

  too_short       fewer than `min_chars` characters (after trimming)
  too_long        more than `max_chars` characters
  url             a web address ("http://", "www.", "name.com/...")
  boilerplate     site furniture: "click here", "subscribe", "all rights
                  reserved", "privacy policy", cookies, log-in prompts, ...
  non_text        markup, control or replacement characters, or fewer than
                  `min_letter_fraction` of the non-space characters letters
  near_duplicate  within one recording and source, an earlier kept text with
                  the same words (Jaccard similarity of the word sets at least
                  `near_duplicate_jaccard`, or equal after normalising)
  not_music       the learned classifier's probability of "describes music"
                  below `threshold` (only for `classifier_sources`)

Rules run in that order and the first that fires is the reason. A filtered
text is never dropped silently: the builder counts it by reason in the
report and lists it, with its score, in `filtered_texts.jsonl`.

The classifier (`MusicTextClassifier`) is a scikit-learn logistic regression
on a frozen sentence encoder's embeddings: all-MiniLM-L6-v2 mean-pooled, the
checkpoint this project warm-starts its text tower from. `training_set`
draws music-descriptive texts (names and descriptions of the AudioSet music
subtree, demo captions) and others (the rest of the ontology), split by
ontology class and by caption template so that held-out figures are about
texts of classes and wordings the classifier never saw; `launch/
train_text_filter.py` trains, reports held-out precision and recall, and
saves it.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import re
import unicodedata
from typing import Any, Callable, Iterable, Sequence

import numpy as np

REASONS = ("too_short", "too_long", "url", "boilerplate", "non_text",
           "near_duplicate", "not_music")

_URL = re.compile(
    r"(https?://|ftp://|\bwww\.|\b[a-z0-9-]+\.(com|org|net|io|info|biz|co\.uk|fm|ly)\b(/\S*)?)",
    re.IGNORECASE)
_BOILERPLATE = re.compile(
    r"\b(click here|click to|subscribe|sign up|sign in|log ?in to|log ?in with|"
    r"all rights reserved|copyright|privacy policy|terms of (use|service)|"
    r"cookies?\b|accept (all )?cookies|follow us|share (this|on)|"
    r"download now|buy now|free shipping|add to (cart|basket)|"
    r"page not found|lorem ipsum|javascript|enable (js|javascript)|"
    r"advertisement|sponsored|newsletter|read more|view (all|more) comments|"
    r"skip to (main )?content|powered by)\b|\u00a9", re.IGNORECASE)
_MARKUP = re.compile(r"</?[a-zA-Z][^>]{0,200}>|&(amp|lt|gt|quot|nbsp|#\d+);")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the rules accept, and where the learned classifier applies.

  Attributes:
    min_chars, max_chars: length bounds of a kept text, in characters.
    min_letter_fraction: letters among non-space characters, at least.
    near_duplicate_jaccard: word-set similarity from which a text repeats an
      earlier one of the same recording and source.
    classifier: path of a saved `MusicTextClassifier` (`.npz`), or None for
      the rules alone.
    threshold: probability of "describes music" a text needs to be kept.
    classifier_sources: the text sources the classifier judges. Short tags
      and ontology labels come from vocabularies in most corpora; the
      sentences and titles are where web text lands.
  """

  min_chars: int = 2
  max_chars: int = 1000
  min_letter_fraction: float = 0.5
  near_duplicate_jaccard: float = 0.9
  classifier: str | None = None
  threshold: float = 0.5
  classifier_sources: tuple[str, ...] = ("LF", "PL")

  def __post_init__(self):
    if not 0 <= self.min_chars <= self.max_chars:
      raise ValueError(f"need 0 <= min_chars <= max_chars, got {self.min_chars}, "
                       f"{self.max_chars}")
    for name in ("min_letter_fraction", "near_duplicate_jaccard", "threshold"):
      value = getattr(self, name)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")

  def fingerprint(self) -> str:
    """Hash of the settings and of the classifier file's bytes (build caching)."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode())
    if self.classifier:
      with open(self.classifier, "rb") as f:
        h.update(f.read())
    return h.hexdigest()[:16]


def normalise(text: str) -> str:
  """Lower case, Unicode NFKC, words only: the form near-duplicates compare."""
  return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def rule_reason(text: str, settings: Settings) -> str | None:
  """The first rule a text fails, or None."""
  stripped = text.strip()
  if len(stripped) < settings.min_chars:
    return "too_short"
  if len(stripped) > settings.max_chars:
    return "too_long"
  if _URL.search(stripped):
    return "url"
  if _BOILERPLATE.search(stripped):
    return "boilerplate"
  if _MARKUP.search(stripped) or "\ufffd" in stripped or any(
      unicodedata.category(c) in ("Cc", "Cs", "Co") for c in stripped if c not in "\t\n"):
    return "non_text"
  visible = [c for c in stripped if not c.isspace()]
  letters = sum(c.isalpha() for c in visible)
  if letters < settings.min_letter_fraction * len(visible):
    return "non_text"
  return None


def _jaccard(a: frozenset, b: frozenset) -> float:
  return len(a & b) / len(a | b) if a or b else 1.0


@dataclasses.dataclass(frozen=True)
class Filtered:
  """A text the filter took out, and why."""

  record_id: str
  source: str
  text: str
  reason: str
  score: float | None = None  # the classifier's probability, where it ran

  def as_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


class TextFilter:
  """Rules and the optional classifier over records' texts (see module doc)."""

  def __init__(self, settings: Settings = Settings(),
               classifier: MusicTextClassifier | None = None):
    self.settings = settings
    if classifier is None and settings.classifier:
      classifier = MusicTextClassifier.load(settings.classifier)
    self.classifier = classifier

  def apply(self, records: Sequence[tuple[str, dict[str, list[str]]]]
            ) -> tuple[list[dict[str, list[str]]], list[Filtered]]:
    """Filters the texts of many records at once (the classifier batches them).

    Args:
      records: (record id, {source: texts}) pairs.

    Returns:
      The kept texts of each record, in order ({source: texts}; sources left
      with nothing are absent), and every filtered text with its reason.
    """
    kept: list[dict[str, list[str]]] = []
    filtered: list[Filtered] = []
    to_score: list[tuple[int, str, int]] = []  # (record, source, position)
    for r, (record_id, texts) in enumerate(records):
      out: dict[str, list[str]] = {}
      for source, items in texts.items():
        seen_exact: set[str] = set()
        seen_words: list[frozenset] = []
        for text in items:
          reason = rule_reason(text, self.settings)
          if reason is None:
            norm = normalise(text)
            words = frozenset(norm.split())
            if norm in seen_exact or any(
                _jaccard(words, w) >= self.settings.near_duplicate_jaccard
                for w in seen_words):
              reason = "near_duplicate"
            else:
              seen_exact.add(norm)
              seen_words.append(words)
          if reason is not None:
            filtered.append(Filtered(record_id, source, text, reason))
            continue
          out.setdefault(source, []).append(text)
          if self.classifier is not None and source in self.settings.classifier_sources:
            to_score.append((r, source, len(out[source]) - 1))
      kept.append(out)
    if to_score:
      scores = self.classifier.probability(
          [kept[r][s][i] for r, s, i in to_score])
      drop: dict[tuple[int, str], set[int]] = collections.defaultdict(set)
      for (r, source, i), score in zip(to_score, scores):
        if score < self.settings.threshold:
          drop[(r, source)].add(i)
          filtered.append(Filtered(records[r][0], source, kept[r][source][i], "not_music",
                                   float(score)))
      for (r, source), positions in drop.items():
        left = [t for i, t in enumerate(kept[r][source]) if i not in positions]
        if left:
          kept[r][source] = left
        else:
          del kept[r][source]
    return kept, filtered


def count(filtered: Iterable[Filtered]) -> dict[str, int]:
  """Filtered texts by reason, every reason listed (zeros included)."""
  counts = collections.Counter(f.reason for f in filtered)
  return {reason: counts.get(reason, 0) for reason in REASONS}


# ---------------------------------------------------------------------------
# The learned music-descriptive classifier.

Encoder = Callable[[list[str]], np.ndarray]


def minilm_encoder(texts: list[str], batch_size: int = 256) -> np.ndarray:
  """The frozen encoder: all-MiniLM-L6-v2, mean-pooled, L2-normalised."""
  from jplaylist.evaluators import text_triplets  # pylint: disable=g-import-not-at-top
  if not texts:
    return np.zeros((0, 384), np.float32)
  return np.concatenate([text_triplets.mean_pooled_minilm(list(texts[i:i + batch_size]))
                         for i in range(0, len(texts), batch_size)])


@dataclasses.dataclass
class MusicTextClassifier:
  """Logistic regression on frozen sentence embeddings: P(text describes music)."""

  coef: np.ndarray       # [dim]
  intercept: float
  encoder_name: str = "all-MiniLM-L6-v2 mean-pooled"
  encoder: Encoder = dataclasses.field(default=minilm_encoder, repr=False)

  def probability(self, texts: list[str]) -> np.ndarray:
    x = self.encoder(list(texts))
    return 1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept)))

  def save(self, path: str) -> None:
    with open(path, "wb") as f:
      np.savez(f, coef=self.coef, intercept=np.float64(self.intercept),
               encoder_name=np.array(self.encoder_name))

  @classmethod
  def load(cls, path: str, encoder: Encoder = minilm_encoder) -> MusicTextClassifier:
    with np.load(path) as data:
      name = str(data["encoder_name"])
      if name != "all-MiniLM-L6-v2 mean-pooled" and encoder is minilm_encoder:
        raise ValueError(f"{path} was trained on {name!r} embeddings; pass its encoder")
      return cls(np.asarray(data["coef"], np.float64), float(data["intercept"]), name,
                 encoder)


@dataclasses.dataclass
class LabelledTexts:
  texts: list[str]
  labels: np.ndarray    # 1: describes music
  kinds: list[str]      # where each text came from, for per-kind figures


def _held_out(key: str, fraction: float, seed: int) -> bool:
  digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def training_set(ontology_path: str, *, music_captions: Sequence[str] = (),
                 heldout_music_captions: Sequence[str] = (),
                 heldout_fraction: float = 0.25, seed: int = 0
                 ) -> tuple[LabelledTexts, LabelledTexts]:
  """Train and held-out texts from the full AudioSet ontology and captions.

  A class of the ontology is music-descriptive when it lies under "Music"
  (its name and its description are positives), otherwise not. Classes go
  to the held-out set by a hash of their id, so a held-out description's
  class is unseen in training. `music_captions` (e.g. demo captions from the
  training templates) join the training positives; `heldout_music_captions`
  (from templates training never used) join the held-out ones.
  """
  with open(ontology_path, encoding="utf-8") as f:
    classes = {c["id"]: c for c in json.load(f)}
  roots = [c["id"] for c in classes.values() if c["name"] == "Music"]
  if not roots:
    raise ValueError(f"{ontology_path} has no 'Music' class: is it the full ontology?")
  music, stack = set(), list(roots)
  while stack:
    i = stack.pop()
    if i not in music and i in classes:
      music.add(i)
      stack.extend(classes[i]["child_ids"])
  if len(music) == len(classes):
    raise ValueError(f"{ontology_path} holds only the music subtree; the classifier "
                     "needs the full ontology (audioset_ontology.json) for negatives")
  sets = {False: LabelledTexts([], [], []), True: LabelledTexts([], [], [])}
  for class_id, c in sorted(classes.items()):
    target = sets[_held_out(class_id, heldout_fraction, seed)]
    label = int(class_id in music)
    for kind, text in (("ontology name", c["name"]), ("ontology description",
                                                      c.get("description", ""))):
      if text.strip():
        target.texts.append(text)
        target.labels.append(label)
        target.kinds.append(kind)
  for held, captions in ((False, music_captions), (True, heldout_music_captions)):
    for text in captions:
      sets[held].texts.append(text)
      sets[held].labels.append(1)
      sets[held].kinds.append("caption")
  for s in sets.values():
    s.labels = np.asarray(s.labels, np.int32)
  return sets[False], sets[True]


def train(data: LabelledTexts, encoder: Encoder = minilm_encoder, *,
          c_grid: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0), folds: int = 5,
          seed: int = 0) -> tuple[MusicTextClassifier, dict[str, Any]]:
  """Fits the classifier; C by stratified cross-validation (F1) on `data` only.

  Classes are weighted to balance music and other texts.
  """
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import GridSearchCV, StratifiedKFold  # pylint: disable=g-import-not-at-top
  x = encoder(data.texts)
  search = GridSearchCV(
      LogisticRegression(class_weight="balanced", max_iter=5000),
      {"C": list(c_grid)}, scoring="f1",
      cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
  search.fit(x, data.labels)
  model = search.best_estimator_
  info = {"C": float(search.best_params_["C"]), "cv_f1": float(search.best_score_),
          "num_train": len(data.texts), "num_train_music": int(data.labels.sum())}
  return MusicTextClassifier(model.coef_[0].astype(np.float64),
                             float(model.intercept_[0]), encoder=encoder), info


def evaluate(classifier: MusicTextClassifier, data: LabelledTexts,
             threshold: float = 0.5) -> dict[str, Any]:
  """Precision, recall and F1 of "describes music" at `threshold`, overall and
  per kind of text (recall only where a kind has no negatives)."""
  scores = classifier.probability(data.texts)
  predicted = scores >= threshold
  kinds = np.asarray(data.kinds)

  def figures(mask):
    y, p = data.labels[mask], predicted[mask]
    tp = int(np.sum(p & (y == 1)))
    out = {"count": int(mask.sum()), "music": int(np.sum(y == 1)),
           "recall": tp / max(int(np.sum(y == 1)), 1)}
    if np.any(y == 0):
      out["precision"] = tp / max(int(p.sum()), 1)
      out["false_positive_rate"] = int(np.sum(p & (y == 0))) / int(np.sum(y == 0))
      out["f1"] = (2 * out["precision"] * out["recall"]
                   / max(out["precision"] + out["recall"], 1e-12))
    return out

  report = {"threshold": threshold, "all": figures(np.ones(len(kinds), bool))}
  for kind in sorted(set(data.kinds)):
    report[kind] = figures(kinds == kind)
  return report
