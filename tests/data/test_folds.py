"""Cross-validation folds by composition: names, assignment and reading a fold."""

import json

import numpy as np
import pytest

from jplaylist.data import builder
from jplaylist.data import folds
from jplaylist.data import pipeline


def test_names_round_trip_and_bad_names_are_refused():
  name = folds.split_name(["train", "validation"], 3, 10, "test")
  assert name == "train+validation:fold3of10:test"
  assert folds.parse(name) == folds.FoldSplit(("train", "validation"), 3, 10, "test")
  assert folds.parse("train") is None
  for bad, message in [("train:fold10of10:test", "not in"), ("train:fold0of1:test", "2 folds"),
                       ("train:fold0of3:eval", "neither"), ("train+train:fold0of3:test", "distinct")]:
    with pytest.raises(ValueError, match=message):
      folds.parse(bad)


def test_groups_stay_whole_folds_are_balanced_and_the_deal_is_fixed():
  rng = np.random.default_rng(0)
  groups = [f"piece{int(g)}" for g in rng.integers(0, 37, 200)]
  assigned = folds.assign(groups, 10)
  for g in set(groups):
    assert len({int(f) for f, h in zip(assigned, groups) if h == g}) == 1
  per_fold = [len({g for f, g in zip(assigned, groups) if f == k}) for k in range(10)]
  assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == len(set(groups))
  np.testing.assert_array_equal(folds.assign(list(reversed(groups)), 10), assigned[::-1])
  with pytest.raises(ValueError, match="cannot fill"):
    folds.assign(["a", "b"], 3)


def test_a_fold_split_of_a_built_dataset_partitions_the_pool_by_composition(tiny_demo):
  path = tiny_demo[0].path
  pool = ["train", "validation", "test"]
  everything = [builder.open_split(path, s) for s in pool]
  ids = [r["id"] for s in everything for r in (s[i] for i in range(len(s)))]
  by_id = {r["id"]: np.asarray(r["audio"]) for s in everything
           for r in (s[i] for i in range(len(s)))}
  seen = []
  for fold in range(3):
    train = builder.open_split(path, folds.split_name(pool, fold, 3, "train"))
    test = builder.open_split(path, folds.split_name(pool, fold, 3, "test"))
    train_ids = {train[i]["id"] for i in range(len(train))}
    test_records = [test[i] for i in range(len(test))]
    test_ids = {r["id"] for r in test_records}
    assert not train_ids & test_ids and train_ids | test_ids == set(ids)
    composition = lambda r: json.loads(r["attributes"])["composition"]  # noqa: E731
    train_pieces = {composition(train[i]) for i in range(len(train))}
    assert not {composition(r) for r in test_records} & train_pieces
    # Each record comes with its own samples.
    for r in test_records:
      np.testing.assert_array_equal(r["audio"], by_id[r["id"]])
    seen += sorted(test_ids)
  assert sorted(seen) == sorted(ids)
  # The input pipeline reads a fold like any split.
  loader = pipeline.make_loader(
      path, folds.split_name(pool, 0, 3, "train"),
      pipeline.PipelineOptions(batch_size=2, window_seconds=1.0, num_epochs=1),
      labels=pipeline.LabelOptions(field="style", classes=("Baroque", "Celtic", "Chinese folk",
                                                           "Classical", "German folk",
                                                           "Irish traditional", "Medieval",
                                                           "Renaissance", "Romantic")))
  batch = next(iter(loader))
  assert batch["audio"].shape == (2, 16_000) and batch["label"].shape == (2,)
  with pytest.raises(ValueError, match="has no split 'nope'"):
    builder.open_split(path, "train+nope:fold0of3:test")
