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
mtime are not read again; new and changed ones are embedded.

Across machines (jax.distributed, as `launch.train` joins a multi-process
run): each process embeds one contiguous block of the records on its own
devices and writes `<output>.part-K-of-N.npz`; process 0 waits for all and
joins them into --output, the same index one process writes. --output must
be on storage every process sees.

  python -m launch.embed --workdir=... --dataset=... --split=train \
      --output=/shared/library.npz --coordinator_address=host0:1234 \
      --num_processes=2 --process_id=0     # and --process_id=1 on the other

This file is intentionally kept short.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from jax.experimental import multihost_utils

from jplaylist import inference
from jplaylist import library_index
from jplaylist import sharding

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
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "Multi-process: the coordinator's host:port.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process: processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process: this process.")
flags.mark_flags_as_required(["workdir", "output"])


def _part_path(output, part, num_parts):
  stem = output[:-len(".npz")] if output.endswith(".npz") else output
  return f"{stem}.part-{part:05d}-of-{num_parts:05d}.npz"


def _join_parts(output, num_parts):
  """Process 0: the parts, in order, as one index at `output`; parts removed."""
  paths = [_part_path(output, k, num_parts) for k in range(num_parts)]
  missing = [p for p in paths if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(f"parts not found: {missing}; is --output on storage every "
                            "process sees?")
  parts = [library_index.load(p) for p in paths]
  meta = {k: v for k, v in parts[0].meta.items() if k != "part"}
  index = library_index.concatenate(parts, {**meta, "num_processes": num_parts})
  path = index.save(output)
  for p in paths:
    os.remove(p)
  return index, path


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if bool(_DATASET.value) == bool(_FOLDER.value):
    raise app.UsageError("give exactly one of --dataset and --folder")
  if _UPDATE.value and not _FOLDER.value:
    raise app.UsageError("--update needs --folder")
  distributed = sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                               _PROCESS_ID.value)
  part = (jax.process_index(), jax.process_count())
  if _UPDATE.value and part[1] > 1:
    raise app.UsageError("--update runs on one process")
  model = inference.load(_WORKDIR.value, _STEP.value)
  if _DATASET.value:
    index = inference.index_dataset(model, _DATASET.value, _SPLIT.value, chunk=_CHUNK.value,
                                    part=part)
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
    index, skipped = inference.index_folder(model, _FOLDER.value, chunk=_CHUNK.value,
                                            part=part)
    for path, reason in skipped:
      logging.warning("skipped %s: %s", path, reason)
  index.meta.update(workdir=os.path.abspath(_WORKDIR.value), step=model.step)
  if not distributed:
    path = index.save(_OUTPUT.value)
  else:
    index.meta["part"] = list(part)
    index.save(_part_path(_OUTPUT.value, *part))
    print(f"Process {part[0]}: wrote {len(index)} embeddings to "
          f"{_part_path(_OUTPUT.value, *part)}")
    multihost_utils.sync_global_devices("launch.embed: every part written")
    if part[0] != 0:
      return
    index, path = _join_parts(_OUTPUT.value, part[1])
  print(f"Wrote {len(index)} embeddings ({index.embeddings.shape[1]}-d) to {path}")


if __name__ == "__main__":
  app.run(main)
