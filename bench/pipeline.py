r"""Input pipeline throughput: examples/s with 0 and 2 grain workers, side by side.

  python -m bench.pipeline --data_dir=data            # the demo corpus (built if missing)
  python -m bench.pipeline --data_dir=data --batch_size=64 --num_batches=40

Prints the per-stage cost of one example (record read and decode, window,
tokenize) measured in this process, then end-to-end examples/s of the grain
DataLoader (decode, window, tokenize, batch) for each worker count.
"""

import dataclasses
import time

from absl import app
from absl import flags
import numpy as np

from jplaylist.data import builder
from jplaylist.data import pipeline
from jplaylist.data import tokenizer
from jplaylist.data.demo import corpus

_DATA_DIR = flags.DEFINE_string("data_dir", "data", "TFDS data directory.")
_DATASET = flags.DEFINE_string("dataset", "demo", "Dataset name under music_text/.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Examples per batch.")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 30, "Timed batches per setting.")
_WORKERS = flags.DEFINE_list("workers", ["0", "2"], "Worker counts to compare.")


def _stage_costs(path: str, options: pipeline.PipelineOptions, n: int = 200):
  source = builder.open_split(path, "train")
  rng = np.random.default_rng(0)
  make = pipeline.MakeExample(options, builder.sample_rate_of(path))
  t0 = time.perf_counter()
  records = [source[i % len(source)] for i in range(n)]
  t1 = time.perf_counter()
  for r in records:
    pipeline.cut_window(np.asarray(r["audio"]), make.window, rng)
  t2 = time.perf_counter()
  texts = [r["texts"]["SF"][0].decode() for r in records]
  tokenizer.encode(texts[:1], options.max_text_length)  # load the vocabulary
  t3 = time.perf_counter()
  for text in texts:
    tokenizer.encode([text], options.max_text_length)
  t4 = time.perf_counter()
  return {"read+decode": (t1 - t0) / n, "window": (t2 - t1) / n,
          "tokenize": (t4 - t3) / n}


def _throughput(path: str, options: pipeline.PipelineOptions, num_batches: int):
  it = iter(pipeline.make_loader(path, "train", options))
  next(it)  # start-up: workers, vocabulary, first reads
  start = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  elapsed = time.perf_counter() - start
  return num_batches * options.batch_size / elapsed


def main(argv):
  del argv
  path = builder.dataset_path(_DATA_DIR.value, _DATASET.value)
  if _DATASET.value == "demo":
    path = corpus.prepare(_DATA_DIR.value, verbose=False).path
  options = pipeline.PipelineOptions(batch_size=_BATCH.value)
  print(f"dataset {path}\nbatch {options.batch_size}, window "
        f"{options.window_seconds} s, text length {options.max_text_length}")
  costs = _stage_costs(path, options)
  print("per-example cost in one process: " + ", ".join(
      f"{k} {v * 1e3:.2f} ms" for k, v in costs.items()))
  results = {}
  for workers in (int(w) for w in _WORKERS.value):
    rate = _throughput(path, dataclasses.replace(options, worker_count=workers),
                       _NUM_BATCHES.value)
    results[workers] = rate
    print(f"workers={workers}: {rate:8.1f} examples/s "
          f"({rate / options.batch_size:.2f} batches/s)")
  base = results[min(results)]
  for workers, rate in results.items():
    if workers == min(results):
      continue
    print(f"  workers={workers} vs workers={min(results)}: {rate / base:.2f}x")


if __name__ == "__main__":
  app.run(main)
