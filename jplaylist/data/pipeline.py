"""Training input pipeline: (audio window, text) pairs the way MuLan draws them.

For every example the pipeline

  1. takes a recording from the split (shuffled, deterministic from the seed,
     sharded per host);
  2. draws a text source kind with the configured proportions (the patent's
     SF:LF:PL:ASET = 2:2:1:1). A recording that lacks the drawn kind is drawn
     again among the kinds it has, in the same proportions among themselves,
     so no recording is ever dropped for a missing source;
  3. draws one annotation of that kind uniformly;
  4. cuts one random 10-s window of audio (recordings shorter than the window
     are zero-padded at the end; `audio_length` counts the real samples).
     In the builder's default layout the record's `audio` is a memory-mapped
     view of the split's audio file (`split_audio.py`), so only the window's
     bytes are read, whatever the track's length; a dataset in the earlier
     layout (samples inside each record) decodes the whole track first. The
     window is the same either way;
  5. tokenizes the annotation with a BERT WordPiece vocabulary to
     `[CLS] ... [SEP]` padded with id 0 to `max_text_length`.

Batches are dicts of numpy arrays with fixed shapes:

  audio        [B, window_samples] int16, the stored samples (full scale 32768)
  audio_length [B] int32, real samples at the start of each row (the rest is
               zero padding)
  text_ids     [B, max_text_length] int32
  text_mask    [B, max_text_length] int32, 1 on real tokens
  source       [B] int32, index into SOURCES of the drawn kind

Audio stays int16 up to the device: the model scales it to float32 there
(`two_tower.waveform_to_float`) and derives its valid-frame mask from
`audio_length`, so a 10-s window at 16 kHz ships 320,004 bytes rather than
800,000 (float32 samples and a bool mask per sample).

With `labels` (`LabelOptions`, for a supervised classifier) an example is
instead a window and a label read from the record's `attributes` (no text):

  audio        [B, window_samples] int16, audio_length [B] int32 as above
  label        [B] int32 class index (single-label), or [B, C] float32
               multi-hot (multi-label: the attribute is a list of values)

Randomness comes from grain's per-record generator, which depends only on the
seed and the record's position in the sampler's order, so every example
(window and text) is the same for any number of worker processes. Grain deals
records to workers round-robin and batches within a worker, so how examples
are grouped into batches depends on `worker_count`: keep it fixed across a
run. An iterator restored from `get_state()` continues exactly where it
stopped.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any, Callable, Mapping, Sequence

from absl import flags
import grain
import numpy as np

from jplaylist.data import builder as builder_lib
from jplaylist.data import tokenizer as tokenizer_lib
from jplaylist.data.manifest import SOURCES

PATENT_SOURCE_WEIGHTS = {"SF": 2.0, "LF": 2.0, "PL": 1.0, "ASET": 1.0}


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
  """How examples are drawn (everything but where the data is).

  Attributes:
    batch_size: examples per batch on this host.
    seed: shuffling and every random draw.
    window_seconds: audio window length.
    max_text_length: tokens per text, [CLS] and [SEP] included (<= 512).
    source_weights: relative weight of each source kind.
    shuffle: shuffle records (per epoch).
    num_epochs: passes over the data; None repeats forever.
    drop_remainder: drop a last partial batch (keeps shapes fixed).
    worker_count: grain worker processes (0: in the calling process).
    shard_index, shard_count: this host's share of the records (multi-host).
    vocab_path: BERT vocab.txt; None uses the MiniLM package's.
  """

  batch_size: int = 32
  seed: int = 0
  window_seconds: float = 10.0
  max_text_length: int = 64
  source_weights: Mapping[str, float] = dataclasses.field(
      default_factory=lambda: dict(PATENT_SOURCE_WEIGHTS))
  shuffle: bool = True
  num_epochs: int | None = None
  drop_remainder: bool = True
  worker_count: int = 0
  shard_index: int = 0
  shard_count: int = 1
  vocab_path: str | None = None

  def weights_array(self) -> np.ndarray:
    unknown = set(self.source_weights) - set(SOURCES)
    if unknown:
      raise ValueError(f"source_weights has unknown kinds {sorted(unknown)}; "
                       f"known: {', '.join(SOURCES)}")
    weights = np.array([float(self.source_weights.get(s, 0.0)) for s in SOURCES])
    if np.any(weights < 0) or weights.sum() <= 0:
      raise ValueError(f"source_weights must be >= 0 with a positive sum: "
                       f"{dict(self.source_weights)}")
    return weights


def choose_source(available: np.ndarray, weights: np.ndarray,
                  rng: np.random.Generator) -> int:
  """Index of the source kind to use for one recording.

  Drawing from the weights restricted to the available kinds is the same as
  drawing from all kinds and redrawing while the drawn kind is missing. A
  recording whose only kinds have weight 0 uses them uniformly rather than
  being dropped.

  Args:
    available: [len(SOURCES)] bool, kinds the recording has annotations of.
    weights: [len(SOURCES)] non-negative weights.
  """
  masked = np.where(available, weights, 0.0)
  if masked.sum() <= 0:
    masked = available.astype(np.float64)
  return int(rng.choice(len(masked), p=masked / masked.sum()))


def cut_window(audio: np.ndarray, window: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.int32]:
  """A uniformly placed window of `window` samples, zero-padded at the end if short.

  Args:
    audio: [samples] int16, a stored recording: an array, or a memory-mapped
      view of one (only the window's samples are then read).
    window: samples per window.
    rng: draws the window's start.

  Returns:
    (samples [window] int16, length: the number of real samples, the first
    `length` of the window).
  """
  if audio.dtype != np.int16:
    raise ValueError(f"expected int16 samples (as the dataset stores them), got {audio.dtype}")
  num_samples = audio.shape[0]
  start = int(rng.integers(0, num_samples - window + 1)) if num_samples >= window else 0
  return window_at(audio, start, window)


def window_at(audio: np.ndarray, start: int, window: int) -> tuple[np.ndarray, np.int32]:
  """`window` samples of `audio` from `start`, zero-padded at the end where the
  recording ends first: (samples [window] int16, length of the real ones).
  Only the window's samples are read from a memory-mapped `audio`."""
  piece = audio[start:start + window]
  out = np.zeros(window, dtype=np.int16)
  out[:len(piece)] = piece
  return out, np.int32(len(piece))


def _as_str(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class MakeExample(grain.transforms.RandomMap):
  """TFDS record -> one (window, tokenized text) training example."""

  def __init__(self, options: PipelineOptions, sample_rate: int):
    self.window = int(round(options.window_seconds * sample_rate))
    self.weights = options.weights_array()
    self.max_text_length = options.max_text_length
    self.vocab_path = options.vocab_path

  def random_map(self, element: dict[str, Any], rng: np.random.Generator):
    texts = element["texts"]
    available = np.array([len(texts[s]) > 0 for s in SOURCES])
    source = choose_source(available, self.weights, rng)
    candidates = texts[SOURCES[source]]
    text = _as_str(candidates[int(rng.integers(len(candidates)))])
    audio, audio_length = cut_window(np.asarray(element["audio"]), self.window, rng)
    ids, mask = tokenizer_lib.encode([text], self.max_text_length, self.vocab_path)
    return {"audio": audio, "audio_length": audio_length, "text_ids": ids[0],
            "text_mask": mask[0], "source": np.int32(source)}


@dataclasses.dataclass(frozen=True)
class LabelOptions:
  """Which record attribute is the label, and its classes.

  Attributes:
    field: key in the record's `attributes` JSON ("style", "instruments").
    classes: the class names, in the order of the model's outputs.
    multi_label: the attribute is a list of values (multi-hot labels; values
      outside `classes` are not labels of this task and are left out);
      otherwise one value, which must be one of `classes`.
  """

  field: str
  classes: Sequence[str]
  multi_label: bool = False

  def __post_init__(self):
    if not self.classes:
      raise ValueError(f"labels.classes is empty (labels.field={self.field!r}): name the "
                       "classes, in the order of the model's outputs")
    counts = collections.Counter(str(c) for c in self.classes)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
      raise ValueError(f"labels.classes repeats {repeated}: each class names one output")


class MakeLabelledExample(grain.transforms.RandomMap):
  """TFDS record -> one (window, label) example of a supervised classifier."""

  def __init__(self, options: PipelineOptions, sample_rate: int, labels: LabelOptions):
    self.window = int(round(options.window_seconds * sample_rate))
    self.labels = labels
    self.index = {name: i for i, name in enumerate(labels.classes)}

  def random_map(self, element: dict[str, Any], rng: np.random.Generator):
    attributes = json.loads(_as_str(element["attributes"]))
    field = self.labels.field
    if field not in attributes:
      raise ValueError(f"record {_as_str(element['id'])!r} has no attribute {field!r} "
                       f"(it has {sorted(attributes)})")
    value = attributes[field]
    if self.labels.multi_label:
      label = np.zeros(len(self.index), np.float32)
      for name in (value if isinstance(value, list) else [value]):
        if str(name) in self.index:
          label[self.index[str(name)]] = 1.0
    elif str(value) not in self.index:
      raise ValueError(f"record {_as_str(element['id'])!r}: {field}={value!r} is not "
                       f"one of the classes {list(self.labels.classes)}")
    else:
      label = np.int32(self.index[str(value)])
    audio, audio_length = cut_window(np.asarray(element["audio"]), self.window, rng)
    return {"audio": audio, "audio_length": audio_length, "label": label}


def make_loader(dataset_path: str, split: str,
                options: PipelineOptions = PipelineOptions(),
                labels: LabelOptions | None = None,
                example: Callable[[PipelineOptions, int], grain.transforms.RandomMap]
                | None = None) -> grain.DataLoader:
  """A grain DataLoader over one split of a built music-text dataset.

  Args:
    dataset_path: the dataset's version folder (`builder.build(...).path`).
    split: "train", "validation" or "test".
    options: how examples are drawn and batched.
    labels: for a classifier: (window, label) examples instead of (window, text).
    example: (options, sample rate) -> the record-to-example transform, for
      any other kind of example (e.g. the adversarial trainer's window pairs).

  Returns:
    A DataLoader; `iter(loader)` yields batch dicts (see module docstring) and
    supports `get_state()` / `set_state()`.
  """
  if options.max_text_length > tokenizer_lib.MAX_POSITIONS:
    raise ValueError(f"max_text_length {options.max_text_length} exceeds BERT's "
                     f"{tokenizer_lib.MAX_POSITIONS} positions")
  if not 0 <= options.shard_index < options.shard_count:
    raise ValueError(f"shard_index {options.shard_index} not in [0, {options.shard_count})")
  if options.worker_count > 0 and not flags.FLAGS.is_parsed():
    # Grain's worker processes read absl flags; outside an absl app (tests,
    # notebooks) nothing parsed them, so take the defaults.
    flags.FLAGS.mark_as_parsed()
  source = builder_lib.open_split(dataset_path, split)
  sample_rate = builder_lib.sample_rate_of(dataset_path)
  shard_options = grain.sharding.ShardOptions(
      shard_index=options.shard_index, shard_count=options.shard_count,
      drop_remainder=True)
  sampler = grain.samplers.IndexSampler(
      num_records=len(source), shard_options=shard_options,
      shuffle=options.shuffle, num_epochs=options.num_epochs, seed=options.seed)
  return grain.DataLoader(
      data_source=source, sampler=sampler,
      operations=[example(options, sample_rate) if example is not None
                  else MakeExample(options, sample_rate) if labels is None
                  else MakeLabelledExample(options, sample_rate, labels),
                  grain.transforms.Batch(options.batch_size,
                                         drop_remainder=options.drop_remainder)],
      worker_count=options.worker_count)
