"""Evaluators from config entries, inside training, standalone, and the report."""

import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
import soundfile
from sklearn import metrics as sk

from jplaylist import inference
from jplaylist.data import builder
from jplaylist.evaluators import report
from jplaylist.evaluators import retrieval
from jplaylist.evaluators import suite
from jplaylist.evaluators import zero_shot
from jplaylist.trainers import summary

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_build_rejects_unknown_kinds_and_options_by_name(tiny_demo):
  with pytest.raises(ValueError, match=r"evals.tags: unknown kind 'tagging'"):
    suite.build({"tags": {"kind": "tagging"}}, tiny_demo[0].path, log=lambda _: None)
  with pytest.raises(ValueError, match=r"evals.zs \(zero_shot\).*templatez"):
    suite.build({"zs": {"kind": "zero_shot", "templatez": ("{}",)}}, tiny_demo[0].path,
                log=lambda _: None)


def test_suite_results_equal_each_evaluator_run_alone(trained_workdir, tiny_demo):
  model = inference.load(trained_workdir, batch_size=4)
  path = tiny_demo[0].path
  entries = ml_collections.ConfigDict({
      "zs": dict(kind="zero_shot", every=5, split="train", families=("instruments",)),
      "t2m": dict(kind="text_to_music", every=0, split="train",
                  templates={"k": "{mood} music"})})
  evaluators = suite.build(entries, path, log=lambda _: None)
  assert [e.due(10) for e in evaluators] == [False, True]  # ConfigDict sorts: t2m, zs
  results = suite.run_all(evaluators, model, log=lambda _: None)
  alone = dict(zero_shot.ZeroShotTagging(path, "train", families=("instruments",)).run(model))
  alone.update(retrieval.TextToMusic(path, "train", templates={"k": "{mood} music"}
                                     ).run(model))
  assert results == pytest.approx(alone)


def test_evaluators_run_inside_training(trained_workdir):
  # The demo's runlocal config asks for zero-shot and retrieval at its last step.
  rows = summary.read_metrics(trained_workdir, "evals")
  assert len(rows) == 1 and rows[0]["step"] == 2
  assert 0.0 <= rows[0]["text_to_music/all/map"] <= 1.0
  assert "zero_shot/instruments/auc_roc" in rows[0]


def test_zero_shot_on_a_user_dataset_with_tag_lists(tmp_path, trained_workdir):
  """Any built dataset whose attributes hold a tag list can be tagged zero-shot."""
  rate, rng = 16_000, np.random.default_rng(0)
  tags = [["jazz", "piano"], ["rock"], ["jazz"], ["rock", "piano"], ["ambient"], []]
  rows = []
  for i, tag_list in enumerate(tags):
    soundfile.write(tmp_path / f"{i}.wav", 0.3 * rng.standard_normal(rate * 3), rate)
    rows.append({"id": f"r{i}", "audio": f"{i}.wav", "split": "test",
                 "texts": {"SF": ", ".join(tag_list) or "music"},
                 "attributes": {"tags": tag_list}})
  (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  built = builder.build(manifest=str(tmp_path / "m.jsonl"), data_dir=str(tmp_path / "d"),
                        name="tagged", verbose=False)
  model = inference.load(trained_workdir, batch_size=4)
  results = dict(zero_shot.ZeroShotTagging(built.path, "test", families=("tags",)).run(model))
  data = zero_shot.load_split(built.path, "test")
  names = ["ambient", "jazz", "piano", "rock"]
  y = np.array([[n in a["tags"] for n in names] for a in data.attributes])
  scores = model.embed_audio(data.waveforms, rate) @ model.embed_text(names).T
  expected = np.mean([sk.roc_auc_score(y[:, j], scores[:, j]) for j in range(4)])
  assert results["zero_shot/tags/auc_roc"] == pytest.approx(expected, abs=1e-6)
  assert results["zero_shot/tags/num_tags"] == 4


def test_report_shows_each_metric_beside_its_baseline(tmp_path):
  results = {"zero_shot/instrument_families/auc_roc": 0.93,
             "zero_shot/instrument_families/pr_auc": 0.8,
             "zero_shot/instrument_families/pr_auc_chance": 0.2,
             "zero_shot/instrument_families/num_tags": 7.0,
             "linear_probe/instrument_families/auc_roc": 0.97,
             "text_to_music/all/map": 0.25, "text_to_music/chance_map": 0.1,
             "text_to_music/all/auc_roc": 0.8, "text_to_music/all/recall@10": 0.6,
             "text_to_music/num_queries": 40.0,
             "text_triplets/accuracy": 0.86, "text_triplets/accuracy_minilm_mean_pooled": 0.93}
  paths = report.write(results, str(tmp_path), {"workdir": "w", "step": 3})
  text = open(paths["report"]).read()
  assert "| instrument_families | 7 | 0.930 | 0.800 | 0.200 | 0.970 |" in text
  assert "text-to-music mAP 0.250 = 2.5x chance 0.100 (bar 3x: NOT met)" in text
  assert "zero-shot instrument-family AUC-ROC 0.930 (bar 0.90: met" in text
  assert "| all-MiniLM-L6-v2, mean-pooled (untuned) | 0.930 |" in text
  for name in ("tagging", "retrieval"):
    with open(paths[name], "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert json.load(open(paths["metrics"]))["metrics"] == results


def test_evaluate_launcher_writes_the_report(trained_workdir, tmp_path):
  out = tmp_path / "report"
  env = dict(os.environ, PYTHONPATH=REPO_ROOT)
  done = subprocess.run(
      [sys.executable, "-m", "launch.evaluate", f"--workdir={trained_workdir}",
       "--split=train", "--evals=zero_shot,text_to_music,linear_probe",
       f"--output_dir={out}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
      timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "zero-shot instrument-family AUC-ROC" in done.stdout
  assert f"Report: {out / 'report.md'}" in done.stdout
  saved = json.load(open(out / "metrics.json"))
  assert saved["info"]["step"] == 2 and saved["info"]["split"] == "train"
  assert "linear_probe/instruments/auc_roc" in saved["metrics"]
  with pytest.raises(ValueError, match="unknown evaluator kinds"):
    suite.evaluate_workdir(trained_workdir, kinds=("zero_shot", "nope"))
