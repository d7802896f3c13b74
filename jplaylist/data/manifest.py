"""Manifests of text annotations for a folder of audio files.

A manifest names each recording, its audio file and its text annotations by
source kind. The patent trains from four kinds of text source:

  SF    short-form tags ("flute, baroque, slow")
  LF    long-form sentences ("A slow Baroque chorale on a solo flute.")
  PL    playlist titles ("Calm Baroque Flute")
  ASET  ontology labels (AudioSet class names, "Flute")

Two formats are read:

JSONL, one recording per line:
  {"id": "rec1", "audio": "audio/rec1.wav",
   "texts": {"SF": ["flute, slow"], "LF": ["A slow piece for flute."],
             "PL": "Calm Flute", "ASET": ["Flute"]},
   "split": "train",            # optional
   "group": "composition-17",   # optional, recordings of one group share a split
   "attributes": {"instrument": "flute"}}   # optional, any JSON object

CSV, one annotation per row (rows of one id are merged, in order):
  id,audio,source,text[,split][,group][,attr.<name>...]

Audio paths are relative to the audio directory (by default the manifest's
own directory). Rows that cannot become records are returned as `Rejected`
with a reason instead of raising, so the builder can count them.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import os
import re
from typing import Any

SOURCES = ("SF", "LF", "PL", "ASET")
SOURCE_NAMES = {
    "SF": "short-form tags",
    "LF": "long-form sentences",
    "PL": "playlist titles",
    "ASET": "ontology labels",
}
SPLITS = ("train", "validation", "test")
# A manifest may also name extra evaluation splits, "test_<name>" or
# "validation_<name>" (the demo corpus's "test_heldout_timbre", say).
EXTRA_SPLIT = re.compile(r"^(test|validation)_[a-z0-9_]+$")

# Reasons a manifest row is rejected before any audio is read.
REASONS = (
    "bad_row",              # not parseable, or a required field is missing
    "non_utf8_text",        # bytes that are not UTF-8 in the id or a text
    "duplicate_id",         # an id already taken by an earlier row
    "missing_file",         # the audio file named does not exist
    "missing_annotations",  # no text annotation at all
    "empty_annotations",    # annotations present, all of them empty
)

# Lone surrogates are what undecodable bytes become under "surrogateescape".
_UNDECODABLE = re.compile("[\udc80-\udcff]")


@dataclasses.dataclass
class Record:
  """One recording named by a manifest.

  Attributes:
    id: unique id.
    audio_path: absolute path of the audio file.
    texts: source kind -> non-empty annotations (kinds with none are absent).
    attributes: free-form JSON-able facts about the recording.
    group: recordings sharing a group (a composition, say) share a split.
    split: the split asked for by the manifest, or None to assign one.
    line: 1-based line of the manifest where the record starts.
  """

  id: str
  audio_path: str
  texts: dict[str, list[str]]
  attributes: dict[str, Any]
  group: str
  split: str | None
  line: int


@dataclasses.dataclass
class Rejected:
  """A manifest row, or a record, that was skipped, and why."""

  id: str
  audio: str
  reason: str
  detail: str
  line: int

  def as_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass
class Manifest:
  records: list[Record]
  rejected: list[Rejected]
  empty_annotations_dropped: int  # empty strings removed from good records


class _RowError(Exception):

  def __init__(self, reason: str, detail: str):
    super().__init__(detail)
    self.reason = reason
    self.detail = detail


def _clean_id(value: Any) -> str:
  return re.sub(r"\s+", "_", str(value).strip())


def _normalise_source(key: str) -> str:
  upper = key.strip().upper()
  if upper not in SOURCES:
    raise _RowError("bad_row", f"unknown text source {key!r}; expected one of "
                    f"{', '.join(SOURCES)}")
  return upper


def read(path: str, audio_dir: str | None = None) -> Manifest:
  """Reads a JSONL (`.jsonl`, `.json`) or CSV (`.csv`) manifest.

  Args:
    path: the manifest file.
    audio_dir: base of relative audio paths; the manifest's folder if None.

  Returns:
    The good records in manifest order and the rejected rows with reasons.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"manifest not found: {path}")
  audio_dir = os.path.abspath(audio_dir or os.path.dirname(os.path.abspath(path)))
  with open(path, "rb") as f:
    text = f.read().decode("utf-8", errors="surrogateescape")
  extension = os.path.splitext(path)[1].lower()
  if extension in (".jsonl", ".json", ".ndjson"):
    rows = _jsonl_rows(text)
  elif extension == ".csv":
    rows = _csv_rows(text)
  else:
    raise ValueError(f"manifest {path}: unknown format {extension!r}; use .jsonl or .csv")

  records, rejected, dropped = [], [], 0
  seen_ids: set[str] = set()
  for line, row in rows:
    row_id = _clean_id(row.get("id", "")) if isinstance(row, dict) else ""
    audio = str(row.get("audio", "")) if isinstance(row, dict) else ""
    try:
      if isinstance(row, _RowError):
        raise row
      record, row_dropped = _to_record(row, line, audio_dir)
      if record.id in seen_ids:
        raise _RowError("duplicate_id", f"id {record.id!r} already used above")
      seen_ids.add(record.id)
      if not os.path.isfile(record.audio_path):
        raise _RowError("missing_file", f"no file {record.audio_path}")
      records.append(record)
      dropped += row_dropped
    except _RowError as e:
      if e.reason != "duplicate_id" and row_id and not _UNDECODABLE.search(row_id):
        # The id is taken even by a bad row, so a later row cannot silently
        # stand in for it.
        seen_ids.add(row_id)
      rejected.append(Rejected(
          id=_UNDECODABLE.sub("\ufffd", row_id),
          audio=_UNDECODABLE.sub("\ufffd", audio), reason=e.reason,
          detail=e.detail, line=line))
  return Manifest(records, rejected, dropped)


def _to_record(row: dict[str, Any], line: int,
               audio_dir: str) -> tuple[Record, int]:
  """Validates one parsed row; returns the record and its dropped empties."""
  if row.get("_conflict"):
    raise _RowError("duplicate_id", f"id {row['id']!r} names more than one audio file")
  for field in ("id", "audio"):
    if not str(row.get(field, "")).strip():
      raise _RowError("bad_row", f"field {field!r} is missing or empty")
  record_id = _clean_id(row["id"])
  audio = str(row["audio"]).strip()
  raw_texts = row.get("texts")
  if raw_texts is None:
    raise _RowError("missing_annotations", "no 'texts' field")
  if not isinstance(raw_texts, dict):
    raise _RowError("bad_row", "'texts' must map source kinds to strings")
  texts: dict[str, list[str]] = {}
  total = dropped = 0
  for key, values in raw_texts.items():
    source = _normalise_source(key)
    if isinstance(values, str):
      values = [values]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
      raise _RowError("bad_row", f"texts[{key!r}] must be a string or a list of strings")
    for value in values:
      total += 1
      cleaned = " ".join(value.split())
      if not cleaned:
        dropped += 1
        continue
      texts.setdefault(source, []).append(cleaned)
  for value in [record_id, audio, *(t for ts in texts.values() for t in ts)]:
    if _UNDECODABLE.search(value):
      raise _RowError("non_utf8_text", "text is not valid UTF-8: "
                      + _UNDECODABLE.sub("\ufffd", value)[:80])
  if total == 0:
    raise _RowError("missing_annotations", "'texts' holds no annotation")
  if not texts:
    raise _RowError("empty_annotations", f"all {total} annotations are empty")
  split = row.get("split") or None
  if split is not None and split not in SPLITS and not EXTRA_SPLIT.match(split):
    raise _RowError("bad_row", f"split {split!r} is not one of {', '.join(SPLITS)} "
                    "nor test_<name> / validation_<name>")
  attributes = row.get("attributes") or {}
  if not isinstance(attributes, dict):
    raise _RowError("bad_row", "'attributes' must be an object")
  group = _clean_id(row.get("group") or record_id)
  audio_path = audio if os.path.isabs(audio) else os.path.join(audio_dir, audio)
  return Record(record_id, os.path.normpath(audio_path), texts, attributes,
                group, split, line), dropped


def _jsonl_rows(text: str):
  for line_number, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      yield line_number, _RowError("bad_row", f"not JSON: {e}")
      continue
    if not isinstance(row, dict):
      yield line_number, _RowError("bad_row", "a row must be a JSON object")
      continue
    yield line_number, row


def _csv_rows(text: str):
  reader = csv.DictReader(io.StringIO(text, newline=""))
  missing = {"id", "audio", "source", "text"} - set(reader.fieldnames or ())
  if missing:
    raise ValueError(f"CSV manifest lacks column(s): {', '.join(sorted(missing))}")
  merged: dict[str, dict[str, Any]] = collections.OrderedDict()
  errors: list[tuple[int, _RowError]] = []
  for row in reader:
    line = reader.line_num
    key = _clean_id(row.get("id") or "")
    if not key:
      errors.append((line, _RowError("bad_row", "field 'id' is missing or empty")))
      continue
    entry = merged.get(key)
    if entry is None:
      entry = merged[key] = {
          "id": key, "audio": row.get("audio") or "", "texts": {},
          "split": row.get("split") or None, "group": row.get("group") or None,
          "attributes": {k[5:]: v for k, v in row.items()
                         if k and k.startswith("attr.") and v not in (None, "")},
          "_line": line, "_audios": {row.get("audio") or ""},
      }
    else:
      entry["_audios"].add(row.get("audio") or "")
    if row.get("source") or row.get("text"):
      entry["texts"].setdefault(row.get("source") or "", []).append(row.get("text") or "")
  for line, error in errors:
    yield line, error
  for entry in merged.values():
    line = entry.pop("_line")
    audios = entry.pop("_audios")
    if len(audios) > 1:
      # Rows with one id but different files are two recordings under one id.
      yield line, {**entry, "_conflict": True}
      continue
    yield line, entry

