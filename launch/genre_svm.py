r"""Genre classification from each embedding of the library, in one table.

  python -m launch.genre_svm --dataset=data/music_text/demo/1.0.0 \
      --index=hyper_cnn_192d=workdirs/hyper_cv/out_of_fold.npz \
      --index=contrastive_128d=workdirs/demo/library.npz \
      --index=user_anchored_40d=workdirs/user_anchored/library.npz \
      --output=workdirs/genre_svm

The user-anchored paper's recipe (`jplaylist/evaluators/genre_svm.py`: PCA to
128, RBF SVM with gamma 1/128 and C = 1) on the 10 folds by composition of
train+validation+test (`jplaylist/data/folds.py`, the folds of
`launch.cross_validate`), scoring the demo corpus's `style`. Two control rows
come with it: a random Gaussian 128-d embedding (chance for the SVM) and the
class prior. Each --index must hold every pool recording. Writes
<output>/genre_svm.json and .md and prints the table. This file is
intentionally kept short.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from configs import highlights
from jplaylist.evaluators import cross_validation as cv
from jplaylist.evaluators import genre_svm

_DATASET = flags.DEFINE_string("dataset", None, "Built dataset folder (TFDS version dir).")
_INDEX = flags.DEFINE_multi_string("index", [], "NAME=PATH of a library index (.npz).")
_POOL = flags.DEFINE_string("pool", "train+validation+test", "Splits pooled into folds.")
_NUM_FOLDS = flags.DEFINE_integer("num_folds", 10, "Folds, grouped by composition.")
_FIELD = flags.DEFINE_string("field", "style", "The attribute classified.")
_CLASSES = flags.DEFINE_list("classes", list(highlights.DEMO_STYLES), "Its classes.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for genre_svm.json and .md.")
flags.mark_flags_as_required(["dataset", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not _INDEX.value:
    raise app.UsageError("give at least one --index=NAME=PATH")
  pool = cv.Pool(_DATASET.value, _POOL.value.split("+"), _NUM_FOLDS.value, _FIELD.value,
                 _CLASSES.value)
  embeddings = {}
  for entry in _INDEX.value:
    name, sep, path = entry.partition("=")
    if not sep or not name or not path:
      raise app.UsageError(f"--index={entry!r}: expected NAME=PATH")
    embeddings[name] = pool.index_features(path)
    print(f"{name}: {embeddings[name].shape[1]}-d, {path}", flush=True)
  embeddings["random Gaussian 128-d (control)"] = np.random.default_rng(0).normal(
      size=(len(pool), 128))
  results = genre_svm.table(pool, embeddings)
  results["class prior"] = [cv.prior_fold(pool.labels, *pool.fold_positions(f),
                                          len(pool.classes)) for f in range(pool.num_folds)]
  os.makedirs(_OUTPUT.value, exist_ok=True)
  report = {"dataset": _DATASET.value, "pool": pool.pool, "num_folds": pool.num_folds,
            "field": _FIELD.value, "classes": list(pool.classes), "recordings": len(pool),
            "indexes": dict(e.partition("=")[::2] for e in _INDEX.value),
            "per_fold": results, "summary": {k: cv.summarize(v) for k, v in results.items()}}
  with open(os.path.join(_OUTPUT.value, "genre_svm.json"), "w") as f:
    json.dump(report, f, indent=1)
  table = cv.markdown(results)
  with open(os.path.join(_OUTPUT.value, "genre_svm.md"), "w") as f:
    f.write(table + "\n")
  print(table)


if __name__ == "__main__":
  app.run(main)
