r"""K-fold cross-validation of a classifier config, by composition, with rivals.

  python -m launch.cross_validate --config=configs/hyper_image_genre.py \
      --workdir=workdirs/hyper_cv --compare_index=workdirs/demo/library.npz
  python -m launch.cross_validate --config=configs/hyper_image_genre.py:model=mresnet \
      --workdir=workdirs/mresnet_cv --baselines=false

For each fold of `config.cross_validation` (the pool's recordings grouped by
composition, `jplaylist/data/folds.py`), trains the config's classifier on the
other folds in <workdir>/fold_K (the shared loop: an interrupted run resumes,
a finished fold is not trained again) and scores the fold's recordings by the
mean log-softmax of their windows. With --baselines, also scores on the same
folds: logistic regression on summary statistics of the recordings'
hyper-images, the class prior, and (--compare_index) a linear probe on
another model's library index. Writes <workdir>/cross_validation.json and
.md (precision@1 and @3 per fold, means and standard deviations) and
<workdir>/out_of_fold.npz: a library index of every pool recording's
embedding (the classifier's layer before its output, mean over windows)
from the fold model that never saw it. --folds=0,3 runs some folds only.
This file is intentionally kept short.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tqdm
from ml_collections import config_flags

from jplaylist import library_index
from jplaylist.data import builder
from jplaylist.data import folds as folds_lib
from jplaylist.evaluators import cross_validation as cv
from jplaylist.trainers import classifier

_CONFIG = config_flags.DEFINE_config_file("config", None, "A classifier config.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "One sub-folder per fold, and the report.")
_FOLDS = flags.DEFINE_list("folds", [], "Folds to run (default: all).")
_BASELINES = flags.DEFINE_bool("baselines", True, "Also score the summary-statistics "
                               "classifier and the class prior on the same folds.")
_COMPARE_INDEX = flags.DEFINE_multi_string(
    "compare_index", [], "NAME=PATH or PATH of a library index (.npz) whose embeddings "
    "are linear-probed on the same folds (every pool recording must be in it).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  if config.get("trainer") != "classifier":
    raise app.UsageError("--config must be a classifier config (config.trainer='classifier')")
  workdir = _WORKDIR.value
  os.makedirs(workdir, exist_ok=True)
  spec = config.cross_validation
  pool_splits = spec.pool.split("+")
  dataset_path = builder.dataset_path(config.input.data_dir, config.input.dataset)
  pool = cv.Pool(dataset_path, pool_splits, spec.num_folds, config.labels.field,
                 config.labels.classes)
  folds = [int(f) for f in _FOLDS.value] or list(range(spec.num_folds))
  num_classes = len(pool.classes)
  print(f"{len(pool)} recordings of {'+'.join(pool_splits)} in {spec.num_folds} folds "
        f"by composition; classes {list(pool.classes)}; running folds {folds}", flush=True)

  name = config.model.kind
  results = {name: []}
  embeddings = {}
  for fold in folds:
    fold_config = config.copy_and_resolve_references()
    with fold_config.unlocked():
      fold_config.input.train_split = folds_lib.split_name(pool_splits, fold, spec.num_folds,
                                                           "train")
      fold_config.input.eval_split = folds_lib.split_name(pool_splits, fold, spec.num_folds,
                                                          "test")
    fold_dir = os.path.join(workdir, f"fold_{fold}")
    print(f"fold {fold}: training in {fold_dir}", flush=True)
    result = classifier.train_and_evaluate(fold_config, fold_dir)
    if result.get("preempted"):
      print(f"fold {fold}: stopped at step {result['step']} ({result['stop_reason']}); "
            "run the same command again to resume", flush=True)
      raise SystemExit(1)
    _, test = pool.fold_positions(fold)
    scorer = cv.WindowedClassifier(fold_dir)
    scores, fold_embeddings = scorer([pool.waveform(int(p)) for p in test])
    results[name].append(cv.fold_scores(scores, pool.labels[test]))
    embeddings.update(zip(test.tolist(), fold_embeddings))
    print(f"fold {fold}: {name} p@1 {results[name][-1]['p@1']:.3f} "
          f"p@3 {results[name][-1]['p@3']:.3f}", flush=True)

  if _BASELINES.value:
    bar = tqdm.tqdm(total=len(pool), desc="hyper-image summary statistics", unit="rec")
    stats = cv.summary_statistics([pool.waveform(i) for i in range(len(pool))],
                                  builder.sample_rate_of(dataset_path),
                                  progress=lambda n: bar.update(n - bar.n))
    bar.close()
    results["summary statistics + logistic regression"] = []
    results["class prior"] = []
    for fold in folds:
      train, test = pool.fold_positions(fold)
      results["summary statistics + logistic regression"].append(
          cv.sklearn_fold(stats, pool.labels, train, test, num_classes))
      results["class prior"].append(cv.prior_fold(pool.labels, train, test, num_classes))
  for entry in _COMPARE_INDEX.value:
    label, _, path = entry.rpartition("=")
    features = pool.index_features(path)
    key = f"linear probe on {label or os.path.basename(path)}"
    results[key] = []
    for fold in folds:
      train, test = pool.fold_positions(fold)
      results[key].append(cv.sklearn_fold(features, pool.labels, train, test, num_classes))

  report = {"folds": folds, "num_folds": spec.num_folds, "pool": pool_splits,
            "classes": list(pool.classes), "field": config.labels.field,
            "recordings": len(pool), "per_fold": results,
            "summary": {k: cv.summarize(v) for k, v in results.items()}}
  with open(os.path.join(workdir, "cross_validation.json"), "w") as f:
    json.dump(report, f, indent=1)
  table = cv.markdown(results)
  with open(os.path.join(workdir, "cross_validation.md"), "w") as f:
    f.write(table + "\n")
  positions = sorted(embeddings)
  index = library_index.LibraryIndex(
      ids=[pool.ids[p] for p in positions],
      embeddings=np.stack([embeddings[p] for p in positions]).astype(np.float32),
      attributes=[pool.attributes[p] for p in positions],
      meta={"workdir": os.path.abspath(workdir), "source": "out-of-fold embeddings of "
            f"{name} ({len(folds)} of {spec.num_folds} folds)", "normalised": False})
  index.save(os.path.join(workdir, "out_of_fold.npz"))
  print(table)


if __name__ == "__main__":
  app.run(main)
