r"""Trains the builder's music-descriptive text classifier and reports it.

  python -m launch.train_text_filter --output=/tmp/text_filter.npz \
      --dataset=data/music_text/demo/1.0.0

Texts: names and descriptions of the whole AudioSet ontology (music subtree
against the rest), plus, with --dataset, the long-form and playlist texts of
a built dataset (its train split joins training; its other splits, which
the demo corpus writes from held-out templates, are held out). Classes and
captions held out of training give the precision and recall printed and
saved beside the classifier (`<output>.report.json`). Use the classifier in
a build with `launch.prepare_data --dataset=folder ... --text_filter=classifier
--text_filter_classifier=<output>`. This file is intentionally kept short.
"""

import json

from absl import app
from absl import flags
from absl import logging

from jplaylist.data import builder
from jplaylist.data import ontology
from jplaylist.data import text_filter

_OUTPUT = flags.DEFINE_string("output", None, "Where to save the classifier (.npz).")
_ONTOLOGY = flags.DEFINE_string(
    "ontology", None, "The full AudioSet ontology JSON (default: "
    "audioset_ontology.json beside the music ontology, ../shared/data).")
_DATASET = flags.DEFINE_string("dataset", None, "A built dataset whose LF and PL texts "
                               "add music-descriptive examples.")
_HELDOUT_FRACTION = flags.DEFINE_float("heldout_fraction", 0.25,
                                       "Ontology classes held out of training.")
_THRESHOLD = flags.DEFINE_float("threshold", 0.5, "Threshold of the held-out figures.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the held-out classes and the folds.")
flags.mark_flags_as_required(["output"])


def _dataset_texts(path):
  """LF and PL texts of a built dataset: (train split's, other splits')."""
  train, held = [], []
  for split in builder.list_splits(path):
    source = builder.open_split(path, split)
    for i in range(len(source)):
      texts = source[i]["texts"]
      for kind in ("LF", "PL"):
        (train if split == "train" else held).extend(
            t.decode() if isinstance(t, bytes) else str(t) for t in texts[kind])
  return sorted(set(train)), sorted(set(held) - set(train))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)  # TFDS logs every file it opens at INFO
  path = _ONTOLOGY.value or ontology.default_path(full=True)
  captions, heldout_captions = _dataset_texts(_DATASET.value) if _DATASET.value else ([], [])
  train_set, heldout_set = text_filter.training_set(
      path, music_captions=captions, heldout_music_captions=heldout_captions,
      heldout_fraction=_HELDOUT_FRACTION.value, seed=_SEED.value)
  print(f"Training texts {len(train_set.texts)} ({int(train_set.labels.sum())} music), "
        f"held out {len(heldout_set.texts)} ({int(heldout_set.labels.sum())} music).")
  classifier, info = text_filter.train(train_set, seed=_SEED.value)
  report = {"ontology": path, "dataset": _DATASET.value, "train": info,
            "heldout": text_filter.evaluate(classifier, heldout_set, _THRESHOLD.value)}
  classifier.save(_OUTPUT.value)
  with open(_OUTPUT.value + ".report.json", "w") as f:
    json.dump(report, f, indent=1)
  print(f"C = {info['C']} (cross-validated F1 {info['cv_f1']:.3f}).")
  print(f"Held out, threshold {_THRESHOLD.value}:")
  for kind, figures in report["heldout"].items():
    if kind == "threshold":
      continue
    line = f"  {kind:22s} n={figures['count']:5d} recall {figures['recall']:.3f}"
    if "precision" in figures:
      line += (f" precision {figures['precision']:.3f} F1 {figures['f1']:.3f} "
               f"false positives {figures['false_positive_rate']:.3f}")
    print(line)
  print(f"Saved {_OUTPUT.value} and {_OUTPUT.value}.report.json")


if __name__ == "__main__":
  app.run(main)
