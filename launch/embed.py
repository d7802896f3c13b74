r"""Embeds a folder of audio files or a TFDS split into a library index.

  python -m launch.embed --workdir=workdirs/demo --split=train,validation,test \
      --dataset=data/music_text/demo/1.0.0 --output=workdirs/demo/library.npz
  python -m launch.embed --workdir=workdirs/demo --folder=/path/to/music \
      --output=/tmp/my_library.npz
  python -m launch.embed --workdir=workdirs/demo --folder=/path/to/music \
      --update=/tmp/my_library.npz --output=/tmp/my_library.npz   # new files only

The index (jplaylist/library_index.py) holds ids, attributes and L2-normalised
audio embeddings; recordings longer than the model's window are embedded as
the mean of their 10-s windows. Unreadable files are skipped and listed.
With --update, files of --folder already in that index with the same size and
mtime are not read again; new and changed ones are embedded. This file is
intentionally kept short.
"""

import os

from absl import app
from absl import flags
from absl import logging

from jplaylist import inference
from jplaylist import library_index

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir of the model.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_DATASET = flags.DEFINE_string("dataset", None, "Built dataset folder (TFDS version dir).")
_SPLIT = flags.DEFINE_list("split", ["test"], "Split(s) of --dataset, e.g. train,validation,test.")
_FOLDER = flags.DEFINE_string("folder", None, "A folder of audio files instead.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the .npz index.")
_CHUNK = flags.DEFINE_integer("chunk", 32, "Recordings embedded per call.")
_UPDATE = flags.DEFINE_string("update", None, "An index of --folder to update: only new and "
                              "changed files are embedded.")
_REMOVE_MISSING = flags.DEFINE_bool("remove_missing", False, "With --update, drop records "
                                    "whose file is gone.")
flags.mark_flags_as_required(["workdir", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if bool(_DATASET.value) == bool(_FOLDER.value):
    raise app.UsageError("give exactly one of --dataset and --folder")
  if _UPDATE.value and not _FOLDER.value:
    raise app.UsageError("--update needs --folder")
  model = inference.load(_WORKDIR.value, _STEP.value)
  if _DATASET.value:
    index = inference.index_dataset(model, _DATASET.value, _SPLIT.value, chunk=_CHUNK.value)
  elif _UPDATE.value:
    existing = library_index.load(_UPDATE.value)
    if existing.meta.get("workdir", os.path.abspath(_WORKDIR.value)) != os.path.abspath(
        _WORKDIR.value):
      raise app.UsageError(f"{_UPDATE.value} was embedded by {existing.meta['workdir']}, "
                           f"not --workdir={_WORKDIR.value}")
    index, report = inference.update_index(model, existing, _FOLDER.value, chunk=_CHUNK.value,
                                           remove_missing=_REMOVE_MISSING.value)
    for path, reason in report.skipped:
      logging.warning("skipped %s: %s", path, reason)
    print(f"Updated {_UPDATE.value}: {report.summary()}")
  else:
    index, skipped = inference.index_folder(model, _FOLDER.value, chunk=_CHUNK.value)
    for path, reason in skipped:
      logging.warning("skipped %s: %s", path, reason)
  index.meta.update(workdir=os.path.abspath(_WORKDIR.value), step=model.step)
  path = index.save(_OUTPUT.value)
  print(f"Wrote {len(index)} embeddings ({index.embeddings.shape[1]}-d) to {path}")


if __name__ == "__main__":
  app.run(main)
