"""Audio and attributes of library-index tracks, for a mix.

A library index (`library_index.py`) holds ids, embeddings and attributes
but no audio. Its ids name records of a built dataset (`launch.embed
--dataset`) or files under a folder (`launch.embed --folder`), so the audio
comes from one of:

  a dataset   the TFDS version folder; records are found by id in the splits
              the index's attributes name (all splits when they name none)
  a folder    an id is a path relative to it; or, when it holds a
              manifest.jsonl (the demo source's: {"id", "audio"} per line), the
              manifest's path; or <folder>/<id>.<ext>, <folder>/audio/<id>.<ext>

Every id that cannot be found or read is returned with its reason, never
dropped silently.
"""

from __future__ import annotations

import collections
import json
import os

from absl import logging
import numpy as np

from jplaylist import library_index
from jplaylist.data import audio_io
from jplaylist.mixing import mix
from jplaylist.mixing import transitions


def select(index: library_index.LibraryIndex, num_tracks: int, seed: int = 0,
           ids: list[str] | None = None) -> list[int]:
  """Positions in `index` of the tracks to mix.

  Args:
    index: the library index.
    num_tracks: how many to draw at random (ignored when `ids` is given).
    seed: seeds the draw.
    ids: explicit ids instead of a draw.

  Returns:
    The positions of `ids` in the order given; a random draw in index order.

  Raises:
    ValueError: an id not in the index or given twice, or a num_tracks below
      1 or above the index's size.
  """
  if ids:
    repeated = sorted(i for i, count in collections.Counter(ids).items() if count > 1)
    if repeated:
      raise ValueError(f"ids given more than once: {', '.join(repeated[:5])}"
                       + (f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""))
    where = {track_id: k for k, track_id in enumerate(index.ids)}
    unknown = [i for i in ids if i not in where]
    if unknown:
      raise ValueError(f"ids not in the index: {', '.join(unknown[:5])}"
                       + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    return [where[i] for i in ids]
  if num_tracks < 1:
    raise ValueError(f"num_tracks={num_tracks}: draw at least 1 track")
  if num_tracks > len(index):
    raise ValueError(f"num_tracks={num_tracks} but the index holds {len(index)} tracks")
  return sorted(np.random.default_rng(seed).choice(len(index), num_tracks, replace=False)
                .tolist())


def from_dataset(dataset_path: str, ids: list[str], splits: list[str] | None = None
                 ) -> tuple[dict[str, tuple[np.ndarray, int]], list[tuple[str, str]]]:
  """Waveforms of `ids` from a built dataset.

  Returns:
    ({id: (float32 waveform, sample rate)}, [(id, reason)] of ids not found).
  """
  from jplaylist.data import builder  # pylint: disable=g-import-not-at-top  (tfds import)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  rate = builder.sample_rate_of(dataset_path)
  splits = splits or list(tfds.builder_from_directory(dataset_path).info.splits)
  wanted, found = set(ids), {}
  for split in splits:
    source = builder.open_split(dataset_path, split)
    for k in range(len(source)):
      if len(found) == len(wanted):
        break
      example = source[k]
      record_id = example["id"].decode()
      if record_id in wanted:
        found[record_id] = (audio_io.int16_to_float(np.asarray(example["audio"])), rate)
  missing = [(i, f"not in splits {','.join(splits)} of {dataset_path}")
             for i in ids if i not in found]
  return found, missing


def _manifest_paths(folder: str) -> dict[str, str]:
  path = os.path.join(folder, "manifest.jsonl")
  if not os.path.exists(path):
    return {}
  paths = {}
  with open(path) as f:
    for line in f:
      if line.strip():
        record = json.loads(line)
        if "id" in record and "audio" in record:
          paths[str(record["id"])] = os.path.join(folder, record["audio"])
  return paths


def from_folder(folder: str, ids: list[str]
                ) -> tuple[dict[str, tuple[np.ndarray, int]], list[tuple[str, str]]]:
  """Waveforms of `ids` from files under `folder` (module docstring).

  Returns:
    ({id: (float32 mono waveform, sample rate)}, [(id, reason)] of ids not
    found or unreadable).
  """
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"--audio_dir is not a folder: {folder}")
  manifest = _manifest_paths(folder)
  found, skipped = {}, []
  for record_id in ids:
    candidates = [os.path.join(folder, record_id)]
    if record_id in manifest:
      candidates.append(manifest[record_id])
    candidates += [os.path.join(folder, sub, record_id + ext) for sub in ("", "audio")
                   for ext in audio_io.AUDIO_EXTENSIONS]
    path = next((c for c in candidates if os.path.isfile(c)), None)
    if path is None:
      skipped.append((record_id, f"no audio file for it under {folder}"))
      continue
    try:
      samples, rate = audio_io.decode(path)
    except audio_io.InvalidAudio as e:
      skipped.append((record_id, f"{path}: {e}"))
      continue
    found[record_id] = (samples.mean(axis=1).astype(np.float32), rate)
  return found, skipped


def tracks_of(index: library_index.LibraryIndex, positions: list[int], *,
              dataset: str | None = None, audio_dir: str | None = None,
              min_seconds: float = 0.0) -> tuple[list[mix.Track], list[tuple[str, str]]]:
  """Mix tracks for `positions` of `index`, with tempo and key from its attributes.

  Args:
    index: the library index.
    positions: which of its records.
    dataset, audio_dir: where the audio is (exactly one).
    min_seconds: shorter tracks are skipped (a mix needs two crossfades).

  Returns:
    (tracks in the order of `positions`, [(id, reason)] of those skipped).
  """
  if bool(dataset) == bool(audio_dir):
    raise ValueError("give exactly one of dataset and audio_dir")
  ids = [index.ids[k] for k in positions]
  if dataset:
    splits = sorted({index.attributes[k].get("split") for k in positions} - {None})
    audio, skipped = from_dataset(dataset, ids, splits or None)
  else:
    audio, skipped = from_folder(audio_dir, ids)
  tracks = []
  for k in positions:
    track_id, attributes = index.ids[k], index.attributes[k]
    if track_id not in audio:
      continue
    waveform, rate = audio[track_id]
    if len(waveform) < min_seconds * rate:
      skipped.append((track_id, f"{len(waveform) / rate:.2f} s < {min_seconds} s"))
      continue
    try:
      key = transitions.key_of_attributes(attributes)
    except ValueError as e:
      logging.warning("%s: %s; its key is estimated from the audio", track_id, e)
      key = None  # the report then says key_source "chroma"
    tempo = attributes.get("tempo_bpm")
    tracks.append(mix.Track(id=track_id, audio=waveform, sample_rate=rate,
                            embedding=index.embeddings[k],
                            tempo_bpm=float(tempo) if tempo else None, key=key))
  return tracks, skipped
