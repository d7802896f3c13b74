r"""Serves the listening page: adaptive playlists of a library, one per browser.

  python -m launch.serve --workdir=workdirs/demo        # then open http://127.0.0.1:8000/
  python -m launch.serve --workdir=workdirs/demo --index=/tmp/my_library.npz \
      --folder=/path/to/music --port=8080

Requests are embedded by the text tower of --workdir; the library is --index
(default <workdir>/library.npz, written by launch/embed.py). The page plays the
library's own recordings: from --dataset (a built dataset's version folder) or
--folder (the folder the index was embedded from), by default from the
index's meta["source"]. Every browser gets its own live session
(`jplaylist.session.live`); the app is `jplaylist.serving.app.make_app`. This
file is intentionally kept short.
"""

import os

from absl import app
from absl import flags
import jax
import uvicorn

from jplaylist import inference
from jplaylist import library_index
from jplaylist.serving import app as app_lib
from jplaylist.serving import audio
from jplaylist.session import strategies

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir of the text tower.")
_INDEX = flags.DEFINE_string("index", None, "Library index (default: <workdir>/library.npz).")
_DATASET = flags.DEFINE_string("dataset", None, "Built dataset folder the audio comes from.")
_FOLDER = flags.DEFINE_string("folder", None, "Or a folder of audio files (index ids are "
                              "paths relative to it).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on.")
_PORT = flags.DEFINE_integer("port", 8000, "Port to listen on.")
_STRATEGY = flags.DEFINE_enum("strategy", strategies.DEFAULT_STRATEGY, strategies.STRATEGIES,
                              "Session strategy.")
_QUEUE = flags.DEFINE_integer("queue_length", app_lib.QUEUE_LENGTH, "Tracks shown in a queue.")
_MAX_SESSIONS = flags.DEFINE_integer("max_sessions", 10_000, "Sessions kept (least recently "
                                     "used forgotten).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _DATASET.value and _FOLDER.value:
    raise app.UsageError("give at most one of --dataset and --folder")
  # Sessions copy small host values to the device at every event, on purpose.
  jax.config.update("jax_transfer_guard", "allow")
  index_path = _INDEX.value or os.path.join(_WORKDIR.value, "library.npz")
  index = library_index.load(index_path)
  source = _DATASET.value or _FOLDER.value or index.meta.get("source")
  if not source:
    raise app.UsageError(f"{index_path} names no audio source: pass --dataset or --folder")
  audio_source = (audio.DatasetAudio(_DATASET.value) if _DATASET.value else
                  audio.FolderAudio(_FOLDER.value) if _FOLDER.value else
                  audio.from_source(source))
  heard = set(audio_source.ids())
  missing = [track for track in index.ids if track not in heard]
  model = inference.load(_WORKDIR.value)
  web = app_lib.make_app(index, model.embed_text, audio_source,
                         session_options={"strategy": _STRATEGY.value},
                         queue_length=_QUEUE.value, max_sessions=_MAX_SESSIONS.value)
  print(f"{len(index)} tracks from {index_path}, audio from {source} "
        f"({len(missing)} without audio{': ' + ', '.join(missing[:5]) if missing else ''}).\n"
        f"Listening page: http://{_HOST.value}:{_PORT.value}/  (Ctrl-C stops)")
  uvicorn.run(web, host=_HOST.value, port=_PORT.value, log_level="warning")


if __name__ == "__main__":
  app.run(main)
