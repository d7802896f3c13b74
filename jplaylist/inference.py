"""Loading a trained model and embedding audio and text: the two-line API.

  model = inference.load("workdirs/demo")           # latest checkpoint
  audio_embeddings = model.embed_audio(waveforms, sample_rate=44_100)   # [N, 128]
  text_embeddings = model.embed_text(["calm baroque flute"])           # [N, 128]

Audio of any sample rate is resampled to the model's; a recording is cut into
non-overlapping windows of the model's length (10 s), each window is
embedded, and the recording's embedding is the L2-normalised mean of its
windows' embeddings, as the patent does for 29-s clips. A final partial window
is kept (zero-padded) when it holds at least `min_last_window` of a window, so
a 29-s clip uses three windows and a 21-s one two; recordings shorter than one
window are zero-padded. A model trained with `model.pool_valid_frames=True`
pools only over frames of real audio, given the pipeline's `audio_length`;
here each padded window gets its own length (its real samples), so a short
clip is embedded as training saw it, not diluted by silence. Calls are batched
into fixed shapes, so a model compiles once per shape bucket however many
items a call holds. `index_folder` writes a library index of a folder;
`update_index` adds a folder's new and changed files to one, embedding only
those (a file's size and mtime, stored in its attributes, tell which).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import soxr
import tqdm

from jplaylist import checkpoint as checkpoint_lib
from jplaylist import library_index
from jplaylist.audio import frontend as frontend_lib
from jplaylist.data import audio_io
from jplaylist.data import builder
from jplaylist.data import tokenizer as tokenizer_lib
from jplaylist.models import resnet as resnet_lib
from jplaylist.models import two_tower

TEXT_BUCKETS = (16, 32, 64, 128, 256, 512)


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  return np.concatenate([x, np.zeros((rows - len(x),) + x.shape[1:], x.dtype)]) \
      if len(x) < rows else x


def cut_windows(waveform: np.ndarray, window: int, min_last_window: float = 0.5
                ) -> tuple[np.ndarray, np.ndarray]:
  """A recording's consecutive windows, as the module docstring describes.

  Returns:
    (windows [num_windows, window] float32, lengths [num_windows] int32: each
    window's real samples, zero padding after them).
  """
  full, rest = divmod(len(waveform), window)
  keep_rest = rest and (full == 0 or rest >= min_last_window * window)
  count = full + (1 if keep_rest else 0)
  out = np.zeros((count, window), np.float32)
  lengths = np.zeros(count, np.int32)
  for i in range(count):
    piece = waveform[i * window:(i + 1) * window]
    out[i, :len(piece)] = piece
    lengths[i] = len(piece)
  return out, lengths


class Model:
  """A trained two-tower model on the host's default device."""

  def __init__(self, config: ml_collections.ConfigDict, variables, *,
               batch_size: int = 16, min_last_window: float = 0.5):
    self.config = config
    self.step = None  # the checkpoint step, when loaded from a workdir
    self.model = two_tower.build(config)
    self.variables = jax.device_put(variables)
    self.batch_size = batch_size
    self.min_last_window = min_last_window
    preset = frontend_lib.decode(self.model.frontend)
    self.sample_rate = preset.sample_rate
    self.window_samples = int(round(config.input.window_seconds * preset.sample_rate))
    self.max_text_length = int(config.input.max_text_length)
    # Configs from before the option trained on a plain mean: no mask for them.
    self.pool_valid_frames = bool(config.model.get("pool_valid_frames", False))

  def set_variables(self, variables) -> None:
    """Swaps in other parameters of the same model (compiled functions are kept)."""
    self.variables = jax.device_put(variables)

  @functools.cached_property
  def _audio_fn(self):
    if self.pool_valid_frames:
      return jax.jit(lambda v, a, m: self.model.apply(v, a, m,
                                                      method=self.model.embed_audio))
    return jax.jit(lambda v, a: self.model.apply(v, a, method=self.model.embed_audio))

  @functools.cached_property
  def _text_fn(self):
    return jax.jit(lambda v, i, m: self.model.apply(v, i, m, method=self.model.embed_text))

  def windows(self, waveform: np.ndarray) -> np.ndarray:
    """[num_windows, window_samples] float32 windows of one recording (model rate)."""
    return self.windows_and_lengths(waveform)[0]

  def windows_and_lengths(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(windows [num_windows, window_samples] float32, lengths [num_windows]
    int32: each window's real samples, zero padding after them) of one
    recording at the model's rate."""
    return cut_windows(waveform, self.window_samples, self.min_last_window)

  def embed_audio(self, waveforms: Sequence[np.ndarray] | np.ndarray,
                  sample_rate: int) -> np.ndarray:
    """Embeds recordings.

    Args:
      waveforms: N mono recordings, 1-D float arrays (full scale 1.0) of any
        length, or a [N, samples] array.
      sample_rate: their sample rate, Hz.

    Returns:
      [N, embed_dim] float32, L2-normalised.
    """
    per_recording, per_recording_lengths = [], []
    for index, waveform in enumerate(waveforms):
      waveform = np.asarray(waveform, np.float32)
      if waveform.ndim != 1 or not len(waveform):
        raise ValueError(f"waveform {index}: expected a non-empty 1-D array, got "
                         f"shape {waveform.shape}")
      if not np.all(np.isfinite(waveform)):
        raise ValueError(f"waveform {index} has NaN or infinite samples")
      if sample_rate != self.sample_rate:
        waveform = soxr.resample(waveform, sample_rate, self.sample_rate,
                                 quality="HQ").astype(np.float32)
      windows, lengths = self.windows_and_lengths(waveform)
      per_recording.append(windows)
      per_recording_lengths.append(lengths)
    if not per_recording:
      return np.zeros((0, self.model.embed_dim), np.float32)
    windows = np.concatenate(per_recording)
    if self.pool_valid_frames:
      # Padding rows of the last batch get length 0: pooling then falls
      # back to a plain mean for them, and they are trimmed anyway.
      lengths = np.concatenate(per_recording_lengths)
      embedded = self._batched(lambda chunk: self._audio_fn(self.variables, *chunk),
                               (windows, lengths))
    else:
      embedded = self._batched(lambda chunk: self._audio_fn(self.variables, chunk), windows)
    counts = [len(w) for w in per_recording]
    means = np.stack([seg.mean(axis=0) for seg in np.split(embedded, np.cumsum(counts)[:-1])])
    return np.asarray(resnet_lib.l2_normalize(jnp.asarray(means)))

  def embed_text(self, texts: Sequence[str]) -> np.ndarray:
    """Embeds texts: [N, embed_dim] float32, L2-normalised."""
    texts = [str(t) for t in texts]
    if not texts:
      return np.zeros((0, self.model.embed_dim), np.float32)
    tokenizer = tokenizer_lib.load(self.config.input.get("vocab_path"))
    longest = max(len(tokenizer.tokenize(t)) + 2 for t in texts)
    length = next((b for b in TEXT_BUCKETS if b >= min(longest, self.max_text_length)),
                  self.max_text_length)
    ids, mask = tokenizer_lib.encode(texts, length, self.config.input.get("vocab_path"))
    return self._batched(lambda chunk: self._text_fn(self.variables, *chunk),
                         (ids, mask))

  def _batched(self, fn, arrays) -> np.ndarray:
    """Runs fn over fixed-size chunks (the last zero-padded) and trims the padding."""
    arrays = arrays if isinstance(arrays, tuple) else (arrays,)
    total = len(arrays[0])
    out = []
    for start in range(0, total, self.batch_size):
      chunk = tuple(_pad_rows(a[start:start + self.batch_size], self.batch_size)
                    for a in arrays)
      result = fn(chunk if len(chunk) > 1 else chunk[0])
      out.append(np.asarray(result)[:min(self.batch_size, total - start)])
    return np.concatenate(out).astype(np.float32)


def load(path: str, step: int | None = None, **kwargs) -> Model:
  """Loads the latest (or a given) checkpoint of a training workdir.

  Args:
    path: the workdir given to `launch.train` (holding `checkpoints/`).
    step: a checkpoint step; None for the latest.
    **kwargs: `Model` options (batch_size, min_last_window).
  """
  state, config = checkpoint_lib.restore_on_host(path, step)
  config = ml_collections.ConfigDict(config)
  variables = {"params": {k: v for k, v in state["params"].items() if k != "loss_bias"}}
  if state.get("batch_stats"):
    variables["batch_stats"] = state["batch_stats"]
  model = Model(config, variables, **kwargs)
  model.step = int(state["step"])
  return model


def _index(model: Model, records: Iterable, chunk: int, meta: dict,
           progress: bool) -> library_index.LibraryIndex:
  """Embeds (id, waveform, rate, attributes) records `chunk` at a time."""
  ids, attributes, embeddings, pending = [], [], [], []

  def flush():
    by_rate = {}
    for item in pending:
      by_rate.setdefault(item[2], []).append(item)
    for rate, items in by_rate.items():
      ids.extend(i[0] for i in items)
      attributes.extend(i[3] for i in items)
      embeddings.append(model.embed_audio([i[1] for i in items], rate))
    pending.clear()

  for record in tqdm.tqdm(records, desc="Embedding", unit="rec", disable=not progress):
    pending.append(record)
    if len(pending) >= chunk:
      flush()
  flush()
  return library_index.LibraryIndex(
      ids=ids, embeddings=(np.concatenate(embeddings) if embeddings
                           else np.zeros((0, model.model.embed_dim), np.float32)),
      attributes=attributes, meta={"step": model.step, **meta})


def block(num_items: int, part: int, num_parts: int) -> range:
  """Positions of `part` of `num_parts` contiguous, near-equal blocks of items.

  Processes embedding one library each take a block; their indexes,
  concatenated in part order, are the one-process index.
  """
  if not 0 <= part < num_parts:
    raise ValueError(f"part {part} is not in [0, {num_parts})")
  return range(num_items * part // num_parts, num_items * (part + 1) // num_parts)


def index_dataset(model: Model, dataset_path: str, splits: Sequence[str] = ("test",), *,
                  chunk: int = 32, progress: bool = True,
                  part: tuple[int, int] = (0, 1)) -> library_index.LibraryIndex:
  """A library index of splits of a built dataset (attributes gain "split").

  part: (k, n) embeds only the k-th of n contiguous blocks of the records
    (splits in order), one process's share of a multi-process embedding.
  """
  sources = [(split, builder.open_split(dataset_path, split)) for split in splits]
  mine = block(sum(len(source) for _, source in sources), *part)

  def records():
    rate = builder.sample_rate_of(dataset_path)
    offset = 0
    for split, source in sources:
      for i in range(max(mine.start - offset, 0), min(mine.stop - offset, len(source))):
        example = source[i]
        yield (example["id"].decode(), audio_io.int16_to_float(np.asarray(example["audio"])),
               rate, {**json.loads(example["attributes"]), "split": split})
      offset += len(source)
  return _index(model, records(), chunk, {"source": dataset_path, "split": ",".join(splits)},
                progress)


def file_signature(path: str) -> dict[str, int]:
  """What tells a changed file: size and modification time (ns), as make and
  rsync judge. Hashing the content would read the whole library on every
  update; a file rewritten with the same size and an old mtime is missed."""
  stat = os.stat(path)
  return {"bytes": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


def _decoded(files: Iterable[tuple[str, str]], skipped: list):
  """(id, mono waveform, rate, {"file": signature}) records; unreadable files
  go to `skipped` as (path, reason)."""
  for record_id, path in files:
    signature = file_signature(path)
    try:
      samples, rate = audio_io.decode(path)
    except audio_io.InvalidAudio as e:
      skipped.append((path, str(e)))
      continue
    yield record_id, samples.mean(axis=1), rate, {"file": signature}


def index_folder(model: Model, folder: str, *, chunk: int = 32, progress: bool = True,
                 part: tuple[int, int] = (0, 1)
                 ) -> tuple[library_index.LibraryIndex, list[tuple[str, str]]]:
  """A library index of the audio files under `folder` (ids: relative paths).

  Each record's attributes hold {"file": file_signature(path)}, so that
  `update_index` can tell unchanged files later.

  part: (k, n) embeds only the k-th of n contiguous blocks of the files.

  Returns:
    (index, [(path, reason)] of files that could not be read).
  """
  skipped = []
  files = list(audio_io.audio_files(folder))
  files = [files[i] for i in block(len(files), *part)]
  index = _index(model, _decoded(files, skipped), chunk, {"source": folder}, progress)
  return index, skipped


@dataclasses.dataclass
class UpdateReport:
  """What `update_index` did. Ids are relative paths under the folder.

  Attributes:
    new: ids embedded for the first time.
    changed: ids re-embedded (size or mtime differ, or none was stored).
    unchanged: how many files were kept without reading them.
    removed: ids dropped because their file is gone (remove_missing=True).
    missing: ids of folder records whose file is gone, kept.
    skipped: (path, reason) of files that could not be read; a changed file
      that cannot be read keeps its old embedding.
  """
  new: list[str]
  changed: list[str]
  unchanged: int
  removed: list[str]
  missing: list[str]
  skipped: list[tuple[str, str]]

  @property
  def embedded(self) -> list[str]:
    return self.new + self.changed

  def summary(self) -> str:
    return (f"{len(self.new)} new and {len(self.changed)} changed files embedded, "
            f"{self.unchanged} unchanged kept, {len(self.removed)} removed, "
            f"{len(self.missing)} missing kept, {len(self.skipped)} unreadable skipped")


def update_index(model: Model, index: library_index.LibraryIndex, folder: str, *,
                 remove_missing: bool = False, chunk: int = 32, progress: bool = True
                 ) -> tuple[library_index.LibraryIndex, UpdateReport]:
  """Adds the new and changed audio files under `folder` to an index.

  A file whose id (path relative to `folder`) is in the index with the same
  stored `file_signature` is neither read nor embedded. Changed files are
  re-embedded in place (rows keep their order); new files are appended in
  path order. Records without a stored signature (other sources, such as a
  dataset) are left alone unless their id names a file under `folder`.

  Args:
    model: the model that embedded `index` (same embedding size; same
      checkpoint step when both are known).
    index: the existing index; not modified.
    folder: the folder whose files are added.
    remove_missing: drop records with a stored signature whose file is no
      longer under `folder` (otherwise they are kept and listed).
    chunk, progress: as in `index_folder`.

  Returns:
    (the updated index, an `UpdateReport`).
  """
  dim = model.model.embed_dim
  if len(index) and index.embeddings.shape[1] != dim:
    raise ValueError(f"the index holds {index.embeddings.shape[1]}-d embeddings; "
                     f"the model makes {dim}-d ones")
  if None not in (index.meta.get("step"), model.step) and index.meta["step"] != model.step:
    raise ValueError(f"the index was embedded at checkpoint step {index.meta['step']}, the "
                     f"model is at step {model.step}: mixing them would rank two spaces "
                     "together; re-embed the whole folder instead")
  rows = {record_id: row for row, record_id in enumerate(index.ids)}
  files = audio_io.audio_files(folder)
  on_disk = {record_id for record_id, _ in files}
  to_embed, new, changed, unchanged = [], [], [], 0
  for record_id, path in files:
    row = rows.get(record_id)
    if row is not None and index.attributes[row].get("file") == file_signature(path):
      unchanged += 1
      continue
    (new if row is None else changed).append(record_id)
    to_embed.append((record_id, path))
  skipped = []
  embedded = _index(model, _decoded(to_embed, skipped), chunk, {}, progress)
  unreadable = {os.path.relpath(path, folder) for path, _ in skipped}
  new = [i for i in new if i not in unreadable]
  changed = [i for i in changed if i not in unreadable]
  missing = [i for i, a in zip(index.ids, index.attributes) if "file" in a and i not in on_disk]
  removed = missing if remove_missing else []
  dropped = set(removed)

  ids, attributes, embeddings = [], [], index.embeddings.copy()
  keep = np.ones(len(index), bool)
  fresh = dict(zip(embedded.ids, zip(embedded.embeddings, embedded.attributes)))
  for row, record_id in enumerate(index.ids):
    if record_id in dropped:
      keep[row] = False
      continue
    attribute = index.attributes[row]
    if record_id in fresh:  # changed: a new embedding, the old attributes updated
      embeddings[row], file_attributes = fresh.pop(record_id)
      attribute = {**attribute, **file_attributes}
    ids.append(record_id)
    attributes.append(attribute)
  appended = [record_id for record_id in new if record_id in fresh]
  updated = library_index.LibraryIndex(
      ids=ids + appended,
      embeddings=np.concatenate([embeddings[keep].reshape(-1, dim)]
                                + [fresh[i][0][None] for i in appended]).astype(np.float32),
      attributes=attributes + [fresh[i][1] for i in appended],
      meta={**index.meta, "step": model.step if model.step is not None
            else index.meta.get("step"),
            "updated_from": folder})
  report = UpdateReport(new=new, changed=changed, unchanged=unchanged, removed=removed,
                        missing=[] if remove_missing else missing, skipped=skipped)
  return updated, report
