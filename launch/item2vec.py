r"""Trains item2vec and ALS on listening sequences and reports next-track ranking.

  python -m launch.item2vec --config=configs/item2vec.py --from_study \
      --library=workdirs/demo/library.npz --output=workdirs/demo/item2vec
  python -m launch.item2vec --config=configs/item2vec.py --sequences=playlists.txt \
      --output=/tmp/item2vec

Sequences come from a playlist file (--sequences, one playlist per line,
whitespace-separated ids) and/or simulated listeners over a library index
(--from_study with --library). With --library the index's tracks are the
universe and its audio embeddings rank by kNN beside item2vec, MF,
popularity and random. Writes embeddings.npz, report.json and report.md to
--output. The work is `jplaylist.playlists.pipeline.run`; this file is
intentionally kept short.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from jplaylist.playlists import pipeline

_CONFIG = config_flags.DEFINE_config_file("config", None, "Item2vec config file.",
                                          lock_config=True)
_SEQUENCES = flags.DEFINE_string("sequences", None,
                                 "Playlist file: one playlist per line, ids split by spaces.")
_FROM_STUDY = flags.DEFINE_bool("from_study", False,
                                "Add the sequences of simulated listeners (needs --library).")
_LIBRARY = flags.DEFINE_string("library", None, "Library index .npz (launch/embed.py).")
_OUTPUT = flags.DEFINE_string("output", None, "Where embeddings and the report go.")
flags.mark_flags_as_required(["config", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not _SEQUENCES.value and not _FROM_STUDY.value:
    raise app.UsageError("give --sequences=FILE and/or --from_study --library=INDEX")
  if _FROM_STUDY.value and not _LIBRARY.value:
    raise app.UsageError("--from_study simulates listeners over a library: give --library")
  # No jax_transfer_guard: host numpy feeds the device on purpose throughout
  # (pairs, ALS lists, scoring), so the default "allow" is what applies.
  paths = pipeline.run(_CONFIG.value, _OUTPUT.value, sequences_path=_SEQUENCES.value,
                       library_path=_LIBRARY.value, from_study=_FROM_STUDY.value)
  print(f"\nEmbeddings: {paths['embeddings']}\nReport: {paths['report_md']} "
        f"({paths['report_json']})")


if __name__ == "__main__":
  app.run(main)
