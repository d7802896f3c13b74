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

from configs import demo as demo_config
from jplaylist import inference
from jplaylist.data import builder
from jplaylist.evaluators import report
from jplaylist.evaluators import retrieval
from jplaylist.evaluators import suite
from jplaylist.evaluators import targets as targets_lib
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
  assert "text-to-music mAP 0.250 = 2.5x chance 0.100" in text
  assert "zero-shot instrument-family AUC-ROC 0.930 (chance 0.5)" in text
  assert "| all-MiniLM-L6-v2, mean-pooled (untuned) | 0.930 |" in text
  for name in ("tagging", "retrieval"):
    with open(paths[name], "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert json.load(open(paths["metrics"]))["metrics"] == results


def test_targets_are_data_and_bad_ones_are_named():
  parsed = targets_lib.parse(demo_config.get_config().targets)
  # Issue 10's bars, one per figure.
  assert {(t.metric, t.over, t.at_least) for t in parsed} == {
      ("zero_shot/instrument_families/auc_roc", None, 0.92),
      ("zero_shot/style/auc_roc", None, 0.80), ("zero_shot/tempo_class/auc_roc", None, 0.80),
      ("zero_shot/mode/auc_roc", None, 0.70), ("zero_shot/mood/auc_roc", None, 0.70),
      ("text_to_music/all/map", "text_to_music/all/chance_map", 4.0),
      ("text_triplets/accuracy", None, 0.934)}
  named = targets_lib.parse({"families": {"metric": "a/auc", "at_least": 0.9}})
  assert named[0].label == "families"
  with pytest.raises(ValueError, match=r"target targets\[1\]: `at_least` must be a number"):
    targets_lib.parse([{"metric": "a", "at_least": 1}, {"metric": "b", "at_least": "high"}])
  with pytest.raises(ValueError, match=r"target x: unknown fields \['atleast'\]"):
    targets_lib.parse({"x": {"metric": "a", "atleast": 0.9}})
  with pytest.raises(ValueError, match="target y: `metric` must name a figure"):
    targets_lib.parse({"y": {"at_least": 0.9}})


def test_target_checks_follow_the_figures():
  bars = targets_lib.parse([
      {"label": "auc", "metric": "m/auc", "at_least": 0.92},
      {"label": "ratio", "metric": "m/map", "over": "m/chance", "at_least": 4.0},
      {"label": "absent", "metric": "m/none", "at_least": 0.5}])
  rng = np.random.default_rng(0)
  for _ in range(20):
    auc, mean_ap, chance = rng.uniform(0.5, 1.0), rng.uniform(0.05, 0.6), rng.uniform(0.02, 0.2)
    checks = targets_lib.check(bars, {"m/auc": auc, "m/map": mean_ap, "m/chance": chance})
    assert checks[0].met == (auc >= 0.92) and checks[0].gap == pytest.approx(auc - 0.92)
    assert checks[1].value == pytest.approx(mean_ap / chance)
    assert checks[1].met == (mean_ap / chance >= 4.0)
    assert checks[2].value is None and checks[2].met is None
  line = targets_lib.check(bars[1:2], {"m/map": 0.25, "m/chance": 0.1})[0].line()
  assert line == "ratio: 2.50x (target >= 4x: NOT met (1.50x short))"
  assert targets_lib.check(bars[:1], {"m/auc": 0.95})[0].verdict() == "met (+0.030)"


def test_report_of_two_splits_compares_them_against_targets(tmp_path):
  rng = np.random.default_rng(1)
  by_split = {}
  for split in ("test", "test_heldout_timbre"):
    flute, violin = rng.uniform(0.3, 1.0, size=2)
    by_split[split] = {
        "zero_shot/instruments/auc_roc": (flute + violin) / 2,
        "zero_shot/instruments/tag/flute/auc_roc": flute,
        "zero_shot/instruments/tag/violin/auc_roc": violin,
        "text_to_music/all/map": rng.uniform(0.1, 0.5), "text_to_music/all/chance_map": 0.1,
        "text_to_music/chance_map": 0.1, "text_triplets/accuracy": 0.9}
  bars = targets_lib.parse([
      {"label": "instruments", "metric": "zero_shot/instruments/auc_roc", "at_least": 0.6},
      {"label": "mAP / chance", "metric": "text_to_music/all/map",
       "over": "text_to_music/all/chance_map", "at_least": 3.0}])
  paths = report.write_splits(by_split, str(tmp_path), {"step": 5}, bars)
  text = open(paths["report"]).read()
  saved = json.load(open(paths["metrics"]))
  assert saved["metrics_by_split"] == by_split
  assert "| figure | target | test | met | test_heldout_timbre | met |" in text
  row = "| instruments | >= 0.6 | " + " | ".join(
      targets_lib.check(bars[:1], by_split[s])[0].value_text() + " | "
      + targets_lib.check(bars[:1], by_split[s])[0].verdict() for s in by_split) + " |"
  assert row in text
  for split, results in by_split.items():
    checks = saved["targets"][split]
    assert checks[1]["value"] == pytest.approx(results["text_to_music/all/map"] / 0.1)
    assert checks[1]["met"] == (results["text_to_music/all/map"] / 0.1 >= 3.0)
    with open(paths[f"tagging_{split}"], "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  flute = [by_split[s]["zero_shot/instruments/tag/flute/auc_roc"] for s in by_split]
  assert f"| instruments | flute | {flute[0]:.3f} | {flute[1]:.3f} |" in text
  assert "## Split `test_heldout_timbre`" in text


def test_training_logs_print_family_means_not_tags():
  results = {"zero_shot/mood/auc_roc": 0.61, "zero_shot/mood/tag/calm/auc_roc": 0.7,
             "zero_shot/mood/pr_auc": 0.3, "text_to_music/all/map": 0.2,
             "text_to_music/all/recall@5": 0.4, "zero_shot_vocab/mtat/auc_roc": 0.55,
             "zero_shot_vocab/mtat/tag/rock/auc_roc": 0.52}
  line = suite.training_summary(results)
  assert line == ("zero_shot/mood/auc_roc 0.6100, text_to_music/all/map 0.2000, "
                  "zero_shot_vocab/mtat/auc_roc 0.5500")


class _CountingModel:
  """Embeds a waveform as [mean, std, length] (an independent stand-in) and counts."""

  def __init__(self):
    self.embedded = 0

  def embed_audio(self, waveforms, sample_rate):
    self.embedded += len(waveforms)
    return np.array([[np.mean(w), np.std(w), len(w) / sample_rate] for w in waveforms],
                    np.float32).reshape(-1, 3)


def test_recordings_shared_by_evaluators_are_embedded_once():
  rng = np.random.default_rng(2)
  waves = [rng.standard_normal(n).astype(np.float32) for n in (50, 80, 50, 120)]
  inner = _CountingModel()
  cached = suite._AudioCache(inner)  # pylint: disable=protected-access
  first = cached.embed_audio([waves[0], waves[1], waves[0].copy()], 10)
  second = cached.embed_audio(waves, 10)
  assert inner.embedded == 4  # waves 0, 1, then 2 and 3
  np.testing.assert_allclose(first, _CountingModel().embed_audio(
      [waves[0], waves[1], waves[0]], 10))
  np.testing.assert_allclose(second, _CountingModel().embed_audio(waves, 10))
  cached.embed_audio(waves[:1], 20)  # another rate is another recording
  assert inner.embedded == 5
  assert cached.embed_audio([], 10).shape == (0, 3)


def test_evaluate_launcher_writes_one_report_for_several_splits(trained_workdir, tmp_path):
  out = tmp_path / "report"
  env = dict(os.environ, PYTHONPATH=REPO_ROOT)
  done = subprocess.run(
      [sys.executable, "-m", "launch.evaluate", f"--workdir={trained_workdir}",
       "--split=train,test_heldout_timbre", "--evals=zero_shot,text_to_music,linear_probe",
       f"--output_dir={out}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
      timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"Report: {out / 'report.md'}" in done.stdout
  saved = json.load(open(out / "metrics.json"))
  assert saved["info"]["step"] == 2 and saved["info"]["split"] == "train,test_heldout_timbre"
  by_split = saved["metrics_by_split"]
  assert sorted(by_split) == ["test_heldout_timbre", "train"]
  assert "linear_probe/instruments/auc_roc" in by_split["train"]
  # The run's config (the demo's) carries issue 10's targets: each is checked per split.
  text = (out / "report.md").read_text()
  assert "| figure | target | train | met | test_heldout_timbre | met |" in text
  for split in by_split:
    checks = {c["metric"]: c for c in saved["targets"][split]}
    family = checks["zero_shot/instrument_families/auc_roc"]
    assert family["value"] == by_split[split]["zero_shot/instrument_families/auc_roc"]
    assert family["met"] == (family["value"] >= 0.92)
  assert "zero-shot AUC, instrument families:" in done.stdout + done.stderr
  # One split keeps the single-split layout.
  results, paths = suite.evaluate_workdir(trained_workdir, split="train", kinds=("zero_shot",),
                                          output_dir=str(tmp_path / "one"),
                                          log=lambda _: None)
  one = json.load(open(paths["metrics"]))
  assert one["metrics"] == results and one["info"]["split"] == "train"
  with pytest.raises(ValueError, match="unknown evaluator kinds"):
    suite.evaluate_workdir(trained_workdir, kinds=("zero_shot", "nope"))
  with pytest.raises(ValueError, match="named twice"):
    suite.evaluate_splits(trained_workdir, splits="test,test")
  with pytest.raises(ValueError, match="has no split 'tset'"):
    suite.evaluate_splits(trained_workdir, splits="test,tset", log=lambda _: None)
