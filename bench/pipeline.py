r"""Input pipeline throughput: whole-record reads against windowed reads, side by side.

  python -m bench.pipeline --data_dir=data            # the demo corpus (built if missing)
  python -m bench.pipeline --data_dir=data --long_tracks=24 --long_minutes=4
  python -m bench.pipeline --data_dir=data --batch_size=64 --num_batches=40 --workers=0

The dataset's manifest (named in its build report) is built twice under
`--scratch_dir`, once in each audio layout (`builder.AUDIO_LAYOUTS`, cached
between runs): "record", the samples inside each TFDS record, so a window
decodes the whole track; "split_file", the samples in one flat file per split,
so a window reads only its own bytes (`split_audio.py`). With `--long_tracks`,
a second corpus of minutes-long recordings (the dataset's train recordings
joined end to end) is built the same two ways, since the saving grows with the
track while the window stays 10 s.

For each corpus it prints, per layout: the cost of one example's audio (read
the record, cut the window) and of tokenizing, measured in this process; then
end-to-end examples/s of the grain DataLoader (read, window, tokenize, batch)
for each worker count. The layouts alternate within each of `--rounds` rounds,
so both see the same machine load; the median round is printed, with the
ratio. Reads are from the page cache once the first round has touched the
files (the figures are warm-cache figures).
"""

import dataclasses
import json
import os
import statistics
import time

from absl import app
from absl import flags
import numpy as np
import soundfile

from jplaylist.data import audio_io
from jplaylist.data import builder
from jplaylist.data import pipeline
from jplaylist.data import tokenizer
from jplaylist.data.demo import corpus

_DATA_DIR = flags.DEFINE_string("data_dir", "data", "TFDS data directory.")
_DATASET = flags.DEFINE_string("dataset", "demo", "Dataset name under music_text/.")
_SCRATCH = flags.DEFINE_string(
    "scratch_dir", "/tmp/jplaylist_bench_pipeline",
    "Where the two layouts (and the long-track corpus) are built; kept as a cache.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Examples per batch.")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 30, "Timed batches per setting and round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds per setting.")
_WORKERS = flags.DEFINE_list("workers", ["0", "2"], "Worker counts to compare.")
_LONG_TRACKS = flags.DEFINE_integer(
    "long_tracks", 0, "Also measure a corpus of this many long recordings (0: none).")
_LONG_MINUTES = flags.DEFINE_float("long_minutes", 4.0, "Length of each long recording.")

LAYOUTS = ("record", "split_file")
NAMES = {"record": "whole-record", "split_file": "windowed"}


def _build_layouts(manifest: str, sample_rate: int, scratch: str, name: str):
  """{layout: dataset path} of `manifest`, built (or reused) in both layouts."""
  paths = {}
  for layout in LAYOUTS:
    print(f"building {name!r} in the {layout!r} layout under {scratch} (cached if done)")
    paths[layout] = builder.build(
        manifest=manifest, data_dir=os.path.join(scratch, layout), name=name,
        checks=audio_io.AudioChecks(sample_rate=sample_rate), audio_layout=layout,
        split_fractions=(1.0, 0.0, 0.0) if name == "long" else (0.8, 0.1, 0.1),
        verbose=False).path
  return paths


def _write_long_corpus(path: str, scratch: str, num_tracks: int, minutes: float) -> str:
  """Minutes-long recordings made of a dataset's train recordings end to end."""
  folder = os.path.join(scratch, f"long_source_{num_tracks}x{minutes:g}min")
  manifest = os.path.join(folder, "manifest.jsonl")
  if os.path.exists(manifest):
    return manifest
  os.makedirs(folder, exist_ok=True)
  source = builder.open_split(path, "train")
  rate = builder.sample_rate_of(path)
  target = int(minutes * 60 * rate)
  rows, position = [], 0
  for track in range(num_tracks):
    parts, length, first = [], 0, None
    while length < target:
      record = source[position % len(source)]
      position += 1
      first = first or record
      parts.append(np.asarray(record["audio"]))
      length += len(parts[-1])
    audio = np.concatenate(parts)[:target]
    soundfile.write(os.path.join(folder, f"long{track}.wav"), audio, rate, subtype="PCM_16")
    texts = {kind: [t.decode() for t in values] for kind, values in first["texts"].items()}
    rows.append({"id": f"long{track}", "audio": f"long{track}.wav",
                 "texts": {k: v for k, v in texts.items() if v}})
    print(f"  long-track corpus: {track + 1}/{num_tracks} recordings of {minutes:g} min")
  with open(manifest, "w", encoding="utf-8") as f:
    f.write("\n".join(json.dumps(r) for r in rows) + "\n")
  return manifest


def _audio_cost(path: str, window: int, indices: np.ndarray) -> float:
  """Seconds per example to read a record and cut its window."""
  source = builder.open_split(path, "train")
  rng = np.random.default_rng(0)
  start = time.perf_counter()
  for i in indices:
    pipeline.cut_window(np.asarray(source[int(i)]["audio"]), window, rng)
  return (time.perf_counter() - start) / len(indices)


def _tokenize_cost(path: str, options: pipeline.PipelineOptions, n: int = 200) -> float:
  source = builder.open_split(path, "train")
  texts = [source[i % len(source)]["texts"]["SF"] for i in range(n)]
  texts = [t[0].decode() if len(t) else "music" for t in texts]
  tokenizer.encode(texts[:1], options.max_text_length)  # load the vocabulary
  start = time.perf_counter()
  for text in texts:
    tokenizer.encode([text], options.max_text_length)
  return (time.perf_counter() - start) / n


def _throughput(path: str, options: pipeline.PipelineOptions, num_batches: int) -> float:
  it = iter(pipeline.make_loader(path, "train", options))
  next(it)  # start-up: workers, vocabulary, first reads
  start = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  elapsed = time.perf_counter() - start
  return num_batches * options.batch_size / elapsed


def _side_by_side(label: str, measure, unit: str, higher_is_better: bool):
  """Runs `measure(layout)` alternating layouts for --rounds rounds; prints medians."""
  runs = {layout: [] for layout in LAYOUTS}
  for _ in range(_ROUNDS.value):
    for layout in LAYOUTS:
      runs[layout].append(measure(layout))
  median = {layout: statistics.median(v) for layout, v in runs.items()}
  ratio = (median["split_file"] / median["record"] if higher_is_better
           else median["record"] / median["split_file"])
  scale = 1e3 if unit == "ms" else 1.0
  print(f"  {label}: " + ", ".join(
      f"{NAMES[layout]} {median[layout] * scale:.2f} {unit}" for layout in LAYOUTS)
        + f"  -> windowed {ratio:.2f}x " + ("faster" if ratio >= 1 else "(slower)"))
  return median


def _measure(title: str, paths: dict[str, str], options: pipeline.PipelineOptions):
  source = builder.open_split(paths["split_file"], "train")
  lengths = np.array([int(source[i]["num_samples"]) for i in range(len(source))])
  rate = builder.sample_rate_of(paths["split_file"])
  window = int(round(options.window_seconds * rate))
  print(f"\n{title}: {len(lengths)} train recordings, {lengths.mean() / rate:.1f} s on "
        f"average ({lengths.min() / rate:.1f}-{lengths.max() / rate:.1f} s)")
  for layout, path in paths.items():
    print(f"  {NAMES[layout]:>12}: {path} ({_size_mb(path):.0f} MB)")
  indices = np.random.default_rng(1).integers(0, len(lengths), 200)
  _side_by_side("read record + cut window, per example",
                lambda layout: _audio_cost(paths[layout], window, indices), "ms", False)
  print(f"  tokenize, per example (either layout): "
        f"{_tokenize_cost(paths['record'], options) * 1e3:.2f} ms")
  for workers in (int(w) for w in _WORKERS.value):
    _side_by_side(
        f"DataLoader, workers={workers}, examples/s",
        lambda layout, w=workers: _throughput(
            paths[layout], dataclasses.replace(options, worker_count=w), _NUM_BATCHES.value),
        "ex/s", True)


def _size_mb(path: str) -> float:
  return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) / 2**20


def main(argv):
  del argv
  path = builder.dataset_path(_DATA_DIR.value, _DATASET.value)
  report_path = os.path.join(path, builder.REPORT_FILE)
  if _DATASET.value == "demo" and not os.path.exists(report_path):
    path = corpus.prepare(_DATA_DIR.value, verbose=False).path
  with open(report_path) as f:
    report = json.load(f)
  options = pipeline.PipelineOptions(batch_size=_BATCH.value)
  print(f"dataset {path} (manifest {report['manifest']})\nbatch {options.batch_size}, "
        f"window {options.window_seconds} s, text length {options.max_text_length}, "
        f"{_NUM_BATCHES.value} timed batches, median of {_ROUNDS.value} interleaved rounds")
  scratch = os.path.abspath(_SCRATCH.value)
  paths = _build_layouts(report["manifest"], report["sample_rate"], scratch, _DATASET.value)
  _measure(f"corpus {_DATASET.value!r}", paths, options)
  if _LONG_TRACKS.value:
    manifest = _write_long_corpus(paths["split_file"], scratch, _LONG_TRACKS.value,
                                  _LONG_MINUTES.value)
    long_paths = _build_layouts(manifest, report["sample_rate"], scratch, "long")
    _measure(f"long-track corpus ({_LONG_TRACKS.value} x {_LONG_MINUTES.value:g} min)",
             long_paths, options)
  print(f"\nThe layouts are kept under {scratch} (reused by the next run).")


if __name__ == "__main__":
  app.run(main)
