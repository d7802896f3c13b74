"""The genre SVM recipe: its settings, a planted problem, and the one-table launcher."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import highlights
from jplaylist import library_index
from jplaylist.evaluators import cross_validation as cv
from jplaylist.evaluators import genre_svm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("dims, train, want", [(192, 500, 128), (40, 500, 40), (192, 60, 59)])
def test_pca_dimensions_and_gamma_follow_the_recipe(dims, train, want):
  model = genre_svm.svm(dims, train)
  pca, svc = model.named_steps["pca"], model.named_steps["svc"]
  assert pca.n_components == want and pca.whiten
  assert svc.gamma == pytest.approx(1 / want) and svc.C == 1.0 and svc.kernel == "rbf"


def test_a_planted_genre_signal_is_found_and_noise_is_not():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 6, 600)
  centres = rng.normal(size=(6, 192))
  planted = centres[labels] + 2.0 * rng.normal(size=(600, 192))
  noise = rng.normal(size=(600, 192))
  train, test = np.arange(450), np.arange(450, 600)
  found = genre_svm.svm_fold(planted, labels, train, test, 6)
  chance = genre_svm.svm_fold(noise, labels, train, test, 6)
  assert found["p@1"] > 0.9 and found["p@3"] >= found["p@1"]
  assert chance["p@1"] < 0.35  # 1/6 expected
  # Precision@1 is the SVM's own accuracy.
  model = genre_svm.svm(192, 450).fit(planted[train], labels[train])
  assert found["p@1"] == pytest.approx(np.mean(model.predict(planted[test]) == labels[test]))


def test_the_launcher_writes_one_table_over_the_same_folds(tiny_demo, tmp_path):
  path = tiny_demo[0].path
  pool = cv.Pool(path, ["train", "validation", "test"], 3, "style", highlights.DEMO_STYLES)
  rng = np.random.default_rng(1)
  index = str(tmp_path / "e.npz")
  # Rows in reverse order: the launcher must match them to the pool by id.
  features = rng.normal(size=(len(pool), 40))
  library_index.LibraryIndex(ids=pool.ids[::-1], embeddings=features[::-1],
                             attributes=pool.attributes[::-1], meta={}).save(index)
  out = subprocess.run([sys.executable, "-m", "launch.genre_svm", f"--dataset={path}",
                        f"--index=mine={index}", "--num_folds=3",
                        f"--output={tmp_path / 'out'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.load(open(tmp_path / "out" / "genre_svm.json"))
  assert list(report["per_fold"]) == ["mine", "random Gaussian 128-d (control)", "class prior"]
  for fold in range(3):
    assert report["per_fold"]["mine"][fold] == genre_svm.svm_fold(
        features, pool.labels, *pool.fold_positions(fold), len(pool.classes))
  assert "| mine |" in out.stdout
  library_index.LibraryIndex(ids=pool.ids[1:], embeddings=features[1:],
                             attributes=pool.attributes[1:], meta={}).save(index)
  missing = subprocess.run([sys.executable, "-m", "launch.genre_svm", f"--dataset={path}",
                            f"--index=mine={index}", "--num_folds=3",
                            f"--output={tmp_path / 'out2'}"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
  assert missing.returncode != 0 and "lacks 1 of the" in missing.stderr
