"""Cross-validated genre classification: precision@k, the rivals and the launcher."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.metrics import top_k_accuracy_score

from configs import highlights
from jplaylist import library_index
from jplaylist.audio import hyper_image
from jplaylist.evaluators import cross_validation as cv

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_precision_at_k_is_top_k_accuracy_and_ties_never_help():
  rng = np.random.default_rng(0)
  scores, labels = rng.normal(size=(300, 9)), rng.integers(0, 9, 300)
  labels[:9] = np.arange(9)  # every class present, as sklearn wants
  for k in (1, 3, 5):
    assert cv.precision_at_k(scores, labels, k) == pytest.approx(
        top_k_accuracy_score(labels, scores, k=k, labels=np.arange(9)))
  # Constant scores rank the classes by index: class j is within the top k iff j < k.
  flat = np.zeros((9, 9))
  assert cv.precision_at_k(flat, np.arange(9), 3) == pytest.approx(3 / 9)
  with pytest.raises(ValueError, match="do not match"):
    cv.precision_at_k(flat, np.arange(8), 1)


def test_the_class_prior_and_the_fold_summary():
  labels = np.array([0, 0, 0, 1, 1, 2, 0, 1, 2, 2])
  train, test = np.arange(6), np.arange(6, 10)
  got = cv.prior_fold(labels, train, test, 3)
  # Train frequencies rank 0 > 1 > 2: test labels 0,1,2,2 -> top-1 hits one of four.
  assert got == {"p@1": 0.25, "p@3": 1.0}
  per_fold = [{"p@1": 0.5, "p@3": 0.75}, {"p@1": 0.25, "p@3": 1.0}, {"p@1": 0.0, "p@3": 0.5}]
  summary = cv.summarize(per_fold)
  assert summary["p@1"] == pytest.approx(0.25)
  assert summary["p@1_std"] == pytest.approx(np.std([0.5, 0.25, 0.0], ddof=1))
  table = cv.markdown({"model": per_fold})
  assert "| model | 0.250 ± 0.250 | 0.750 ± 0.250 | 0.500 | 0.250 | 0.000 |" in table


def test_summary_statistics_are_the_images_row_moments_over_real_frames():
  rate = 16_000
  rng = np.random.default_rng(1)
  short = rng.normal(size=int(0.7 * rate)).astype(np.float32) * 0.1   # one padded window
  long = rng.normal(size=int(2.5 * rate)).astype(np.float32) * 0.1    # 2 full + 1 half
  got = cv.summary_statistics([short, long], rate, window_seconds=1.0)
  config = hyper_image.HyperImageConfig()
  def direct(waveform):
    images = []
    for start in range(0, len(waveform), rate):
      piece = np.zeros(rate, np.float32)
      part = waveform[start:start + rate]
      piece[:len(part)] = part
      image = np.asarray(jax.jit(lambda x: hyper_image.hyper_image(x, rate, config))(piece))
      images.append(image[:, :1 + len(part) // config.hop_length])
    joined = np.concatenate(images, axis=1)
    return np.concatenate([joined.mean(1), joined.std(1)])
  np.testing.assert_allclose(got[0], direct(short), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got[1], direct(long), rtol=1e-4, atol=1e-5)


def test_the_launcher_cross_validates_with_its_rivals_and_exports_out_of_fold_embeddings(
    tiny_demo, tmp_path):
  path = tiny_demo[0].path
  pool = cv.Pool(path, ["train", "validation", "test"], 3, "style", highlights.DEMO_STYLES)
  index = str(tmp_path / "random.npz")
  rng = np.random.default_rng(0)
  library_index.LibraryIndex(ids=list(pool.ids), embeddings=rng.normal(size=(len(pool), 8)),
                             attributes=list(pool.attributes), meta={}).save(index)
  workdir = str(tmp_path / "cv")
  command = [sys.executable, "-m", "launch.cross_validate",
             "--config=configs/hyper_image_genre.py:runlocal=True", f"--workdir={workdir}",
             f"--config.input.data_dir={tiny_demo[2]}", "--config.num_train_steps=2",
             "--config.eval_every=0", "--config.cross_validation.num_folds=3",
             f"--compare_index=random={index}"]
  out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.load(open(os.path.join(workdir, "cross_validation.json")))
  assert report["recordings"] == len(pool) and report["folds"] == [0, 1, 2]
  assert set(report["per_fold"]) == {"hyper_cnn", "summary statistics + logistic regression",
                                     "class prior", "linear probe on random"}
  for name, per_fold in report["per_fold"].items():
    assert len(per_fold) == 3, name
    for fold in per_fold:
      assert 0 <= fold["p@1"] <= fold["p@3"] <= 1
  # The prior row is the training folds' class frequencies, recomputed here.
  for fold in range(3):
    train, test = pool.fold_positions(fold)
    assert report["per_fold"]["class prior"][fold] == cv.prior_fold(pool.labels, train, test,
                                                                    len(pool.classes))
  assert os.path.exists(os.path.join(workdir, "cross_validation.md"))
  # Every pool recording, embedded by the fold model that held it out.
  oof = library_index.load(os.path.join(workdir, "out_of_fold.npz"))
  assert sorted(oof.ids) == sorted(pool.ids) and oof.embeddings.shape[1] == 192
  fold = int(pool.folds[pool.ids.index(oof.ids[0])])
  scorer = cv.WindowedClassifier(os.path.join(workdir, f"fold_{fold}"))
  _, embedding = scorer([pool.waveform(pool.ids.index(oof.ids[0]))])
  np.testing.assert_allclose(oof.embeddings[0], embedding[0], rtol=1e-5, atol=1e-6)
  # Folds of a run are reused: a second run trains nothing.
  again = subprocess.run(command + ["--baselines=false", "--folds=1"], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "train:" not in again.stderr
