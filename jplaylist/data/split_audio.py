"""Windowed reads: a split's samples in one flat int16 file, indexed per record.

A training example needs one 10-s window of a recording; reading the whole
track for it costs in proportion to the track (a 5-min recording is 9.6 MB of
int16 at 16 kHz against 320 kB for the window). So the builder's default
layout ("split_file") keeps the samples out of the TFDS records, in two files
per split beside its ArrayRecord shards:

  music_text-<split>.audio            int16 samples (native byte order) of
                                      every record, end to end, no header
  music_text-<split>.audio_index.npy  [num_records, 2] int64 (offset, length)
                                      in samples; row i is TFDS record i

and each record holds `num_samples`. `SplitSource` hands out record i with
`audio` as a read-only memory-mapped view of its span: the pipeline's
`cut_window` slices it exactly as it sliced a decoded array (the same window
start from the same draw, the same zero padding of short recordings), so
examples are unchanged, and only the window's pages are read.

Building: TFDS shuffles records into its own stored order, known only once
the shards are written, and on Beam many workers decode at once. So each
decoded recording is first staged in a file of its own (`stage`, named by a
hash of its id, in the dataset's folder under construction: on Beam, workers
write there by path), and after TFDS is done the launching process joins the
staged files in stored order into the split's audio file (`join_staged`): one
sequential pass over the audio, then the staging folder is removed. Both build
paths therefore write byte-identical layouts.

A dataset whose features include `audio: Tensor [num_samples] int16` (built
in the "record" layout, or before this layout existed) keeps the samples
inside each record; `SplitSource` returns such records as stored, so they read
as before, only without the windowed saving.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

_FILE_PREFIX = "music_text"  # builder.BUILDER_NAME; TFDS names the shards so.


def audio_paths(path: str, split: str) -> tuple[str, str]:
  """(samples file, index file) of one split of the dataset at `path`."""
  prefix = os.path.join(path, f"{_FILE_PREFIX}-{split}")
  return prefix + ".audio", prefix + ".audio_index.npy"


def _staged_path(staging_dir: str, record_id: str) -> str:
  # Ids are any text; a hash makes a safe file name (ids are unique).
  return os.path.join(staging_dir, hashlib.sha256(record_id.encode()).hexdigest()[:32])


def stage(staging_dir: str, record_id: str, audio: np.ndarray) -> None:
  """Writes one record's samples ([num_samples] int16) to the staging folder."""
  staged = _staged_path(staging_dir, record_id)
  # Written whole, then renamed: a retried Beam bundle rewrites the same bytes,
  # and the join never reads half a file.
  with open(staged + ".tmp", "wb") as f:
    f.write(np.ascontiguousarray(audio, dtype=np.int16).tobytes())
  os.replace(staged + ".tmp", staged)


def join_staged(path: str, staging_dir: str) -> None:
  """Writes each split's audio and index files from the staged samples.

  Args:
    path: a dataset whose TFDS shards are written (records with `num_samples`).
    staging_dir: where `stage` wrote every record's samples; removed after.

  Raises:
    RuntimeError: a record's staged samples are missing or of another length
      than its `num_samples` (nothing is written for that split).
  """
  builder = tfds.builder_from_directory(path)
  for split in builder.info.splits:
    records = builder.as_data_source(split)
    samples_path, index_path = audio_paths(path, split)
    index = np.zeros((len(records), 2), np.int64)
    offset = 0
    with open(samples_path + ".tmp", "wb") as out:
      for i in range(len(records)):
        record = records[i]
        record_id = record["id"].decode()
        staged = _staged_path(staging_dir, record_id)
        if not os.path.exists(staged):
          raise RuntimeError(f"{path}: no staged audio for record {record_id!r} of "
                             f"split {split!r} ({staged})")
        with open(staged, "rb") as f:
          data = f.read()
        num_samples = len(data) // 2
        if num_samples != int(record["num_samples"]):
          raise RuntimeError(f"{path}: record {record_id!r} of split {split!r} says "
                             f"{int(record['num_samples'])} samples, its staged audio "
                             f"has {num_samples}")
        out.write(data)
        index[i] = (offset, num_samples)
        offset += num_samples
    np.save(index_path, index)
    os.replace(samples_path + ".tmp", samples_path)
  shutil.rmtree(staging_dir)


class SplitSource:
  """Random access to the records of one split, each with its `audio`.

  A grain `RandomAccessDataSource`: `len(source)`, `source[i]`. Record i is
  the TFDS record (bytes for text fields) plus `audio`: [num_samples] int16.
  In the "split_file" layout that is a read-only memory-mapped view of the
  split's audio file, so slicing a window reads only the window's bytes (and
  `np.asarray(audio)` copies nothing); in the "record" layout, the array
  decoded from the record. Safe to pickle into grain's worker processes: each process maps
  the file itself, on first use.

  Args:
    path: the dataset's version folder.
    split: the split's name.
    records: TFDS's data source of that split.
    audio_in_records: whether the dataset's features include `audio`.

  Raises:
    ValueError: the records hold no samples and there is no index (a build
      stopped before joining the staged samples), or the index does not match.
  """

  def __init__(self, path: str, split: str, records, audio_in_records: bool):
    self._records = records
    self._samples_path, index_path = audio_paths(path, split)
    self.layout = "record" if audio_in_records else "split_file"
    if self.layout == "split_file" and not os.path.exists(index_path):
      raise ValueError(f"{path}: split {split!r} keeps its samples out of the records "
                       f"but {index_path} is missing (a build that stopped before joining "
                       f"them?): rebuild the dataset")
    self._index = None
    self._samples = None
    if self.layout == "split_file":
      self._index = np.load(index_path)
      if self._index.shape != (len(records), 2):
        raise ValueError(f"{index_path} indexes {len(self._index)} records; split "
                         f"{split!r} of {path} has {len(records)}: rebuild the dataset")

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = self._records[index]
    if self._index is None:
      return record
    offset, num_samples = (int(x) for x in self._index[index])
    if self._samples is None:
      self._samples = (np.memmap(self._samples_path, dtype=np.int16, mode="r")
                       if os.path.getsize(self._samples_path) else np.zeros(0, np.int16))
    return {**record, "audio": self._samples[offset:offset + num_samples]}

  def __iter__(self):
    for index in range(len(self)):
      yield self[index]

  def __getstate__(self):
    return {**self.__dict__, "_samples": None}  # A mapping belongs to one process.

  def __repr__(self) -> str:
    return (f"SplitSource({self._samples_path!r}, layout={self.layout!r}, "
            f"{len(self)} records)")
