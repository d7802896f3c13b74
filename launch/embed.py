r"""Embeds a folder of audio files or a TFDS split into a library index.

  python -m launch.embed --workdir=workdirs/demo --split=train,validation,test \
      --dataset=data/music_text/demo/1.0.0 --output=workdirs/demo/library.npz
  python -m launch.embed --workdir=workdirs/demo --folder=/path/to/music \
      --output=/tmp/my_library.npz

The index (jplaylist/library_index.py) holds ids, attributes and L2-normalised
audio embeddings; recordings longer than the model's window are embedded as
the mean of their 10-s windows. Unreadable files are skipped and listed. This
file is intentionally kept short.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tqdm

from jplaylist import inference
from jplaylist import library_index
from jplaylist.data import audio_io
from jplaylist.data import builder

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir of the model.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_DATASET = flags.DEFINE_string("dataset", None, "Built dataset folder (TFDS version dir).")
_SPLIT = flags.DEFINE_list("split", ["test"], "Split(s) of --dataset, e.g. train,validation,test.")
_FOLDER = flags.DEFINE_string("folder", None, "A folder of audio files instead.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the .npz index.")
_CHUNK = flags.DEFINE_integer("chunk", 32, "Recordings embedded per call.")
flags.mark_flags_as_required(["workdir", "output"])


def _records():
  """Yields (id, waveform float32, sample rate, attributes) and a skip list."""
  if bool(_DATASET.value) == bool(_FOLDER.value):
    raise app.UsageError("give exactly one of --dataset and --folder")
  if _DATASET.value:
    rate = builder.sample_rate_of(_DATASET.value)
    for split in _SPLIT.value:
      source = builder.open_split(_DATASET.value, split)
      for i in range(len(source)):
        example = source[i]
        yield (example["id"].decode(), audio_io.int16_to_float(np.asarray(example["audio"])),
               rate, {**json.loads(example["attributes"]), "split": split})
    return
  for root, _, files in sorted(os.walk(_FOLDER.value)):
    for name in sorted(files):
      if not name.lower().endswith(audio_io.AUDIO_EXTENSIONS):
        continue
      path = os.path.join(root, name)
      try:
        samples, rate = audio_io.decode(path)
      except audio_io.InvalidAudio as e:
        logging.warning("skipped %s: %s", path, e)
        continue
      yield os.path.relpath(path, _FOLDER.value), samples.mean(axis=1), rate, {}


def main(argv):
  del argv
  model = inference.load(_WORKDIR.value, _STEP.value)
  ids, attributes, embeddings, chunk = [], [], [], []

  def flush():
    by_rate = {}
    for item in chunk:
      by_rate.setdefault(item[2], []).append(item)
    for rate, items in by_rate.items():
      ids.extend(i[0] for i in items)
      attributes.extend(i[3] for i in items)
      embeddings.append(model.embed_audio([i[1] for i in items], rate))
    chunk.clear()

  for record in tqdm.tqdm(_records(), desc="Embedding", unit="rec"):
    chunk.append(record)
    if len(chunk) >= _CHUNK.value:
      flush()
  flush()
  index = library_index.LibraryIndex(
      ids=ids, embeddings=(np.concatenate(embeddings) if embeddings
                           else np.zeros((0, model.model.embed_dim), np.float32)),
      attributes=attributes,
      meta={"workdir": os.path.abspath(_WORKDIR.value), "step": _STEP.value,
            "source": _DATASET.value or _FOLDER.value,
            "split": ",".join(_SPLIT.value) if _DATASET.value else None})
  path = index.save(_OUTPUT.value)
  print(f"Wrote {len(index)} embeddings ({index.embeddings.shape[1]}-d) to {path}")


if __name__ == "__main__":
  app.run(main)
