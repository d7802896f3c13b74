"""Track audio for the listening page: a library's own recordings as WAV bytes.

A library index (`jplaylist.library_index`) is embedded either from a built
dataset (`inference.index_dataset`: ids are the records' "id") or from a
folder of audio files (`inference.index_folder`: ids are paths relative to the
folder). The two sources here read the audio back by those ids:

  DatasetAudio(path)   the int16 waveforms the dataset stores, at its rate
  FolderAudio(folder)  any file libsndfile decodes (`audio_io.decode`)

Both answer `wav(track_id) -> bytes`, a 16-bit PCM WAV file every browser's
<audio> plays, or raise `UnknownAudioError` naming the id. `from_source(path)`
picks the kind a path is, so a server can follow an index's `meta["source"]`.
"""

from __future__ import annotations

import collections
import io
import os
import threading
import wave

import numpy as np

from jplaylist.data import audio_io
from jplaylist.data import builder

# Encoded files kept per source: a page asks for the same track several times
# (the <audio> element's range requests), and a demo track is ~1 MB.
CACHED_FILES = 8


class UnknownAudioError(KeyError):
  """No audio for a track id in this source."""

  def __str__(self) -> str:  # KeyError's str() quotes the message
    return str(self.args[0]) if self.args else ""


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
  """A 16-bit PCM WAV file of `samples`.

  Args:
    samples: [frames] or [frames, channels]; int16, or float in [-1, 1]
      (clipped, scaled by 32767).
    sample_rate: Hz.
  """
  samples = np.asarray(samples)
  if samples.ndim == 1:
    samples = samples[:, None]
  if samples.dtype != np.int16:
    samples = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
  buffer = io.BytesIO()
  with wave.open(buffer, "wb") as out:
    out.setnchannels(samples.shape[1])
    out.setsampwidth(2)
    out.setframerate(int(sample_rate))
    out.writeframes(np.ascontiguousarray(samples, "<i2").tobytes())
  return buffer.getvalue()


class _Cached:
  """`wav(track_id)` memoised over the last CACHED_FILES ids, thread-safe."""

  def __init__(self):
    self._cache: collections.OrderedDict[str, bytes] = collections.OrderedDict()
    self._cache_lock = threading.Lock()

  def _read(self, track_id: str) -> bytes:
    raise NotImplementedError

  def wav(self, track_id: str) -> bytes:
    """The track's audio as a WAV file; raises UnknownAudioError."""
    with self._cache_lock:
      if track_id in self._cache:
        self._cache.move_to_end(track_id)
        return self._cache[track_id]
    data = self._read(track_id)
    with self._cache_lock:
      self._cache[track_id] = data
      while len(self._cache) > CACHED_FILES:
        self._cache.popitem(last=False)
    return data


class DatasetAudio(_Cached):
  """The recordings of a built dataset (`jplaylist.data.builder`), by record id.

  Args:
    path: the dataset's version folder (e.g. data/music_text/demo/1.0.0).
    splits: splits to serve from; None: all of them.

  Where each id lies is found by one pass over the splits, on first use
  (`ids()` runs it up front; a few seconds for the demo corpus).
  """

  def __init__(self, path: str, splits=None):
    super().__init__()
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self.path = path
    self.sample_rate = builder.sample_rate_of(path)
    available = list(tfds.builder_from_directory(path).info.splits)
    self.splits = available if splits is None else list(splits)
    missing = sorted(set(self.splits) - set(available))
    if missing:
      raise ValueError(f"{path} has no split {missing}; it has {available}")
    self._sources = {}
    self._where: dict[str, tuple[str, int]] | None = None
    self._lock = threading.Lock()  # array_record readers are not shared across threads

  def _locate(self) -> dict[str, tuple[str, int]]:
    with self._lock:
      if self._where is None:
        where = {}
        for split in self.splits:
          source = self._sources[split] = builder.open_split(self.path, split)
          for position in range(len(source)):
            where.setdefault(source[position]["id"].decode(), (split, position))
        self._where = where
    return self._where

  def ids(self) -> list[str]:
    """Every record id the source serves."""
    return list(self._locate())

  def _read(self, track_id: str) -> bytes:
    found = self._locate().get(track_id)
    if found is None:
      raise UnknownAudioError(f"no recording {track_id!r} in {self.path} "
                              f"(splits {', '.join(self.splits)})")
    split, position = found
    with self._lock:
      samples = np.asarray(self._sources[split][position]["audio"], np.int16)
    return wav_bytes(samples, self.sample_rate)


class FolderAudio(_Cached):
  """Audio files under a folder, by path relative to it (the folder index's ids).

  An id that leaves the folder ("../x", an absolute path, a link out) is unknown.
  """

  def __init__(self, folder: str):
    super().__init__()
    if not os.path.isdir(folder):
      raise FileNotFoundError(f"not a folder: {folder}")
    self.folder = os.path.realpath(folder)

  def path_of(self, track_id: str) -> str:
    """The file of `track_id`; raises UnknownAudioError."""
    path = os.path.realpath(os.path.join(self.folder, track_id))
    if (os.path.isabs(track_id) or os.path.commonpath([path, self.folder]) != self.folder
        or not os.path.isfile(path)):
      raise UnknownAudioError(f"no audio file {track_id!r} under {self.folder}")
    return path

  def ids(self) -> list[str]:
    """Every audio file under the folder, as a relative path."""
    return [track for track, _ in audio_io.audio_files(self.folder)]

  def _read(self, track_id: str) -> bytes:
    path = self.path_of(track_id)
    try:
      samples, sample_rate = audio_io.decode(path)
    except audio_io.InvalidAudio as error:
      raise UnknownAudioError(f"{track_id!r}: {error}") from error
    return wav_bytes(samples, sample_rate)


def from_source(path: str, splits=None):
  """A `DatasetAudio` when `path` is a built dataset (it holds
  dataset_info.json), else a `FolderAudio`: an index's meta["source"] is one."""
  if os.path.isfile(os.path.join(path, "dataset_info.json")):
    return DatasetAudio(path, splits)
  return FolderAudio(path)
