"""The self-supervised adversarial trainer (issue 14) and its report's figures.

Pairs of windows are adjacent slices of the recording, or the same stretch
of two renditions of a composition; the DSSM, adjacency
and adversarial losses equal numpy's; the report's statistics equal
scikit-learn's and scipy's (AUC, average precision) or a direct numpy
computation (MMD); a run resumes exactly with its three optimizers; without
the prior the discriminator never moves; `launch.evaluate` writes the report.
"""

import json
import os

import jax
import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import average_precision_score, roc_auc_score

from configs import adversarial_adjacency
from configs import adversarial_dssm
from jplaylist import checkpoint as checkpoint_lib
from jplaylist.evaluators import self_supervised
from jplaylist.trainers import adversarial
from jplaylist.trainers import summary
from tests.trainers.test_contrastive import _run, _train_command


# ------------------------------------------------------------------ pairs


def test_pair_windows_are_back_to_back_slices():
  audio = np.arange(10_000, dtype=np.int16)
  rng = np.random.default_rng(0)
  for _ in range(50):
    pair, lengths = adversarial.pair_windows(audio, 1_000, rng)
    start = int(pair[0, 0])
    np.testing.assert_array_equal(pair[0], audio[start:start + 1_000])
    np.testing.assert_array_equal(pair[1], audio[start + 1_000:start + 2_000])
    assert lengths.tolist() == [1_000, 1_000]
  # Shorter than two windows: the two halves, zero-padded.
  pair, lengths = adversarial.pair_windows(audio[:1_501], 1_000, rng)
  assert lengths.tolist() == [750, 751]
  np.testing.assert_array_equal(pair[0, :750], audio[:750])
  np.testing.assert_array_equal(pair[1, :751], audio[750:1_501])
  assert not pair[0, 750:].any() and not pair[1, 751:].any()
  with pytest.raises(ValueError, match="int16"):
    adversarial.pair_windows(audio.astype(np.float32), 100, rng)


def test_rendition_windows_take_the_same_stretch_of_the_other_recording():
  audio = np.arange(10_000, dtype=np.int16)
  other = (20_000 + np.arange(5_000)).astype(np.int16)
  rng = np.random.default_rng(0)
  for _ in range(50):
    pair, lengths = adversarial.rendition_windows(audio, other, 1_000, rng)
    start = int(pair[0, 0])
    other_start = int(pair[1, 0]) - 20_000
    np.testing.assert_array_equal(pair[0], audio[start:start + 1_000])
    np.testing.assert_array_equal(pair[1], other[other_start:other_start + 1_000])
    # The same fraction of each recording's playable length.
    assert other_start == round(start / 9_000 * 4_000)
    assert lengths.tolist() == [1_000, 1_000]
  # A rendition shorter than a window: its start, zero-padded.
  pair, lengths = adversarial.rendition_windows(audio, other[:600], 1_000, rng)
  assert lengths.tolist() == [1_000, 600]
  np.testing.assert_array_equal(pair[1, :600], other[:600])
  assert not pair[1, 600:].any()
  with pytest.raises(ValueError, match="int16"):
    adversarial.rendition_windows(audio, other.astype(np.float32), 100, rng)


def _record(record_id, composition, value, n=4_000):
  return {"id": record_id.encode(), "attributes": json.dumps({"composition": composition}),
          "audio": np.full(n, value, np.int16)}


def test_a_rendition_pair_is_never_the_record_itself_and_falls_back_when_alone():
  source = [_record("a1", "A", 1), _record("a2", "A", 2), _record("a3", "A", 3),
            _record("b1", "B", 4)]
  make = adversarial.MakePair(window_seconds=0.1, sample_rate=10_000, positive="rendition",
                              source=source)
  assert make.window == 1_000
  rng = np.random.default_rng(1)
  partners = set()
  for _ in range(60):
    out = make.random_map(source[0], rng)
    assert out["audio"][0, 0] == 1 and out["audio"][1, 0] in (2, 3)
    assert out["group"] == adversarial.group_of({"composition": "A"}, "a1")
    partners.add(int(out["audio"][1, 0]))
  assert partners == {2, 3}   # either other rendition, never a1 itself
  # "B" has one recording: its adjacent windows.
  out = make.random_map(source[3], rng)
  assert (out["audio"] == 4).all() and out["audio_length"].tolist() == [1_000, 1_000]
  adjacent = adversarial.MakePair(window_seconds=0.1, sample_rate=10_000)
  assert (adjacent.random_map(source[0], rng)["audio"] == 1).all()
  with pytest.raises(ValueError, match="known"):
    adversarial.MakePair(0.1, 10_000, positive="cover")
  with pytest.raises(ValueError, match="data source"):
    adversarial.MakePair(0.1, 10_000, positive="rendition")


def test_the_composition_is_the_group():
  one = adversarial.group_of({"composition": "bwv269"}, "a")
  assert one == adversarial.group_of({"composition": "bwv269"}, "b")
  assert one != adversarial.group_of({"composition": "bwv270"}, "a")
  assert adversarial.group_of({}, "a") != adversarial.group_of({}, "b")


# ----------------------------------------------------------------- losses


def _log_softmax(x):
  x = x - x.max(axis=1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def _bce(logits, label):
  return np.log1p(np.exp(-logits)) if label else np.log1p(np.exp(logits))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_dssm_loss_is_a_masked_softmax_over_the_batch(metric):
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
  group = np.array([0, 1, 2, 2, 3, 4])  # rows 2 and 3: one composition
  if metric == "cosine":
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    s = 10.0 * unit(a) @ unit(b).T
  else:
    s = -10.0 * cdist(a, b, "sqeuclidean") / (2 * 5)
  s[2, 3] = s[3, 2] = -np.inf
  want = -np.mean(np.diag(_log_softmax(s)))
  loss, metrics = adversarial.dssm_loss(a, b, group, metric=metric, scale=10.0)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(metrics["accuracy"], np.mean(s.argmax(1) == np.arange(6)))


def test_adjacency_loss_weighs_positives_and_valid_negatives_equally():
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
  group = np.array([0, 0, 1, 2, 3])  # row 0's negative (row 1) is its own composition
  w = rng.normal(size=6)
  head = lambda x, y: np.concatenate([x, y], -1) @ w
  positive = head(a, b)
  negative = head(a, b[[1, 2, 3, 4, 0]])
  valid = np.array([False, True, True, True, True])
  want = 0.5 * (np.mean(_bce(positive, 1)) + np.mean(_bce(negative[valid], 0)))
  loss, metrics = adversarial.adjacency_loss(head, a, b, group)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  correct = np.sum(positive > 0) + np.sum(negative[valid] <= 0)
  np.testing.assert_allclose(metrics["accuracy"], correct / 9)


def test_adversarial_losses():
  real, fake = np.array([2.0, -1.0]), np.array([0.5, -3.0])
  np.testing.assert_allclose(adversarial.discriminator_loss(real, fake),
                             0.5 * (np.mean(_bce(real, 1)) + np.mean(_bce(fake, 0))),
                             rtol=1e-6)
  np.testing.assert_allclose(adversarial.generator_loss(fake), np.mean(_bce(fake, 1)),
                             rtol=1e-6)


# -------------------------------------------------------------- statistics


def test_mmd_equals_its_definition_and_tells_distributions_apart():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(40, 4)), rng.normal(size=(30, 4))
  k = lambda p, q: np.exp(-cdist(p, q, "sqeuclidean") / (2 * 2.0 ** 2))
  kxx, kyy = k(x, x), k(y, y)
  want = ((kxx.sum() - np.trace(kxx)) / (40 * 39) + (kyy.sum() - np.trace(kyy)) / (30 * 29)
          - 2 * k(x, y).mean())
  np.testing.assert_allclose(self_supervised.mmd2(x, y, 2.0), want, rtol=1e-10)
  _, same = self_supervised.mmd_test(x, y, 2.0, permutations=99)
  _, shifted = self_supervised.mmd_test(x + 1.0, y, 2.0, permutations=99)
  assert same > 0.05 and shifted == 0.01


def test_prior_figures_of_prior_samples_and_of_a_shifted_scaled_cloud():
  rng = np.random.default_rng(4)
  prior = self_supervised.prior_figures(rng.normal(size=(300, 8)), permutations=50)
  far = self_supervised.prior_figures(3.0 + 2.0 * rng.normal(size=(300, 8)), permutations=50)
  assert prior["mean_abs_mean"] < 0.15 and abs(prior["mean_variance"] - 1) < 0.15
  assert prior["mmd2_p_value"] > 0.05
  assert far["mean_abs_mean"] > 2.5 and far["mean_variance"] > 3
  assert far["mmd2"] > 10 * abs(far["mmd2_prior_vs_prior"]) and far["mmd2_p_value"] < 0.05


def test_adjacency_figures_match_sklearn():
  rng = np.random.default_rng(5)
  first, second = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
  groups = np.array([0, 0, 1, 2, 3, 4, 5])
  score = lambda a, b: -np.sum((a - b) ** 2, axis=1)
  out = self_supervised.adjacency_figures(score, first, second, groups, has_threshold=True)
  s = -cdist(first, second, "sqeuclidean")
  negative = groups[:, None] != groups[None, :]
  labels = np.r_[np.ones(7), np.zeros(negative.sum())]
  np.testing.assert_allclose(out["auc_roc"],
                             roc_auc_score(labels, np.r_[np.diag(s), s[negative]]))
  best = [np.argmax(np.where(negative[i] | (np.arange(7) == i), s[i], -np.inf))
          for i in range(7)]
  np.testing.assert_allclose(out["r_at_1"], np.mean(np.array(best) == np.arange(7)))
  np.testing.assert_allclose(out["accuracy"], 0.5 * np.mean(np.diag(s) > 0)
                             + 0.5 * np.mean(s[negative] <= 0))


def test_query_by_example_matches_sklearn():
  rng = np.random.default_rng(6)
  embeddings = rng.normal(size=(12, 4))
  groups = np.array([0, 0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 6])  # 3, 5 and 6: no other rendition
  out = self_supervised.query_by_example(embeddings, groups)
  d = -cdist(embeddings, embeddings, "sqeuclidean")
  aps, recalls = [], []
  for q in range(12):
    others = np.arange(12) != q
    relevant = (groups == groups[q])[others]
    if relevant.any():
      aps.append(average_precision_score(relevant, d[q, others]))
      top = np.argsort(-d[q, others])[:10]
      recalls.append(relevant[top].sum() / relevant.sum())
  np.testing.assert_allclose(out["map"], np.mean(aps), rtol=1e-9)
  np.testing.assert_allclose(out["r_at_10"], np.mean(recalls))
  assert out["queries"] == 9


def test_track_embeddings_are_means_of_consecutive_windows():
  waveforms = [np.arange(2_500, dtype=np.float32), np.arange(700, dtype=np.float32)]
  embed = lambda audio, lengths: np.stack([audio[:, 0], lengths.astype(np.float32)], 1)
  out = self_supervised.track_embeddings(embed, waveforms, 1_000, max_windows=8)
  # 2 windows from the middle of 2,500 samples (start 250); one padded window of 700.
  np.testing.assert_allclose(out, [[(250 + 1_250) / 2, 1_000], [0, 700]])


# ---------------------------------------------------------------- trainer


def _config(module, data_dir, arg="", **overrides):
  config = module.get_config("runlocal=True" + (f",{arg}" if arg else ""))
  config.input.data_dir = data_dir
  config.eval_every = 0
  config.update(overrides)
  return config


def _leaves(tree):
  return jax.tree_util.tree_leaves(tree)


def test_a_run_in_two_phases_equals_one_run(tiny_demo, tmp_path):
  data_dir = tiny_demo[2]
  straight, phased = str(tmp_path / "straight"), str(tmp_path / "phased")
  adversarial.train_and_evaluate(_config(adversarial_dssm, data_dir), straight)
  adversarial.train_and_evaluate(_config(adversarial_dssm, data_dir, num_train_steps=2), phased)
  result = adversarial.train_and_evaluate(_config(adversarial_dssm, data_dir), phased)
  assert result["step"] == 4
  a, _ = checkpoint_lib.restore_on_host(straight)
  b, _ = checkpoint_lib.restore_on_host(phased)
  # Parameters and all three optimizers' states.
  for x, y in zip(_leaves((a["params"], a["opt_state"])), _leaves((b["params"], b["opt_state"])),
                  strict=True):
    np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
  rows = summary.read_metrics(phased)
  assert [r["step"] for r in rows] == [1, 2, 3, 4]
  for x, y in zip(summary.read_metrics(straight), rows, strict=True):
    for key in ("loss", "generator_loss", "discriminator_loss"):
      np.testing.assert_allclose(x[key], y[key], rtol=0, atol=1e-6)
  # The adversarial phase ran: the discriminator and both of its optimizers moved.
  initial = adversarial.init_train_state(
      adversarial.build(_config(adversarial_dssm, data_dir)),
      _config(adversarial_dssm, data_dir), jax.random.split(jax.random.key(0))[0])
  assert any(not np.allclose(x, y) for x, y in zip(_leaves(initial.params["disc"]),
                                                   _leaves(a["params"]["disc"])))


def test_without_the_prior_the_discriminator_never_moves(tiny_demo, tmp_path):
  config = _config(adversarial_adjacency, tiny_demo[2], "prior=False", num_train_steps=2)
  adversarial.train_and_evaluate(config, str(tmp_path))
  state, _ = checkpoint_lib.restore_on_host(str(tmp_path))
  initial = adversarial.init_train_state(adversarial.build(config), config,
                                         jax.random.split(jax.random.key(config.seed))[0])
  for x, y in zip(_leaves(initial.params["disc"]), _leaves(state["params"]["disc"]),
                  strict=True):
    np.testing.assert_array_equal(x, y)
  for x, y in zip(_leaves(initial.params["head"]), _leaves(state["params"]["head"]),
                  strict=True):
    assert not np.array_equal(x, y)  # the metric phase trained the head
  rows = summary.read_metrics(str(tmp_path))
  assert "discriminator_loss" not in rows[-1] and np.isfinite(rows[-1]["loss"])


def _find(haystack: np.ndarray, needle: np.ndarray) -> int:
  """The sample offset of `needle` in `haystack`, or -1."""
  for offset in np.flatnonzero(haystack[:len(haystack) - len(needle) + 1] == needle[0]):
    if np.array_equal(haystack[offset:offset + len(needle)], needle):
      return int(offset)
  return -1


def test_rendition_batches_pair_two_recordings_of_one_composition(tiny_demo):
  from jplaylist.data import builder   # pylint: disable=g-import-not-at-top
  config = _config(adversarial_dssm, tiny_demo[2], "positive=rendition")
  config.input.worker_count = 0
  batch = next(iter(adversarial.make_loaders(config, "train", train=True)[0]))
  source = builder.open_split(builder.dataset_path(tiny_demo[2], config.input.dataset), "train")
  records = [source[i] for i in range(len(source))]
  groups = [adversarial.group_of(json.loads(r["attributes"]), r["id"].decode()) for r in records]
  paired = 0
  for audio, lengths, group in zip(batch["audio"], batch["audio_length"], batch["group"]):
    mine = [i for i, g in enumerate(groups) if g == group]
    assert mine
    a_from = [i for i in mine if _find(np.asarray(records[i]["audio"]), audio[0, :lengths[0]]) >= 0]
    b_from = [i for i in mine if _find(np.asarray(records[i]["audio"]), audio[1, :lengths[1]]) >= 0]
    assert a_from and b_from
    if len(mine) > 1:
      assert not set(a_from) & set(b_from)   # two different renditions
      paired += 1
  assert paired > 0


def test_bad_settings_are_refused(tiny_demo):
  for arg, message in (("metric=cosine", "dssm form only"), ("metric=manhattan", "known"),
                       ("positive=cover", "positive='cover'")):
    with pytest.raises(ValueError, match=message):
      adversarial.make_task(_config(adversarial_adjacency, tiny_demo[2], arg), None)
  config = _config(adversarial_dssm, tiny_demo[2])
  config.adversarial.form = "triplet"
  with pytest.raises(ValueError, match="form='triplet'"):
    adversarial.make_task(config, None)
  config = _config(adversarial_dssm, tiny_demo[2])
  config.optimizer.accumulation_steps = 2
  with pytest.raises(ValueError, match="accumulation_steps"):
    adversarial.make_task(config, None)


def test_launch_train_then_evaluate_writes_the_report(tiny_demo, tmp_path):
  out = _run(_train_command(tiny_demo[2], tmp_path, "--config.eval_every=4",
                            "--config.input.eval_split=train",
                            config="configs/adversarial_adjacency.py:runlocal=True"))
  assert "Trained to step 4" in out.stdout, out.stdout[-2000:]
  assert "pair accuracy" in out.stdout
  report_dir = tmp_path / "report"
  # The tiny corpus's test split holds one composition (no negatives): train's.
  out = _run([out.args[0], "-m", "launch.evaluate", f"--workdir={tmp_path}",
              f"--data_dir={tiny_demo[2]}", f"--output_dir={report_dir}", "--split=train"])
  metrics = json.loads((report_dir / "metrics.json").read_text())
  for key in ("adjacency/auc_roc", "adjacency/accuracy", "prior/mmd2", "prior/mmd2_p_value",
              "query_by_example/map", "query_by_example/r_at_10",
              "query_by_humming/in_tune/map", "query_by_humming/off_key_and_tempo/r_at_10",
              "random/query_by_humming/in_tune/map", "travel/path_over_random_order",
              "linear_probe/style/auc_roc"):
    assert np.isfinite(metrics[key]), key
  assert 0.0 <= metrics["adjacency/auc_roc"] <= 1.0
  text = (report_dir / "report.md").read_text()
  for heading in ("Adjacency on held-out compositions", "Distance to the prior",
                  "Query by example", "Query by humming", "Travel", "Linear probes"):
    assert heading in text, heading
  assert os.path.exists(report_dir / "report.md")


def test_the_ablation_table_reads_each_runs_latest_report(tmp_path):
  from bench import adversarial_ablation
  for step, auc in ((50, 0.6), (100, 0.8)):
    folder = tmp_path / "run" / "eval" / f"test_step{step}"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"adjacency/auc_roc": auc,
                                                     "contrastive/query_by_example/map": 0.07}))
  metrics = adversarial_ablation.latest_metrics(str(tmp_path / "run"), "test")
  assert metrics["adjacency/auc_roc"] == 0.8  # step 100, not 50
  line = adversarial_ablation.row("run", metrics)
  assert line.startswith("| run | 0.800 | - |")
  assert "0.070" in adversarial_ablation.row("c", metrics, prefix="contrastive/")
  with pytest.raises(FileNotFoundError, match="launch.evaluate"):
    adversarial_ablation.latest_metrics(str(tmp_path / "none"), "test")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_pair_similarities_are_the_diagonal_of_the_batch_similarities(metric):
  rng = np.random.default_rng(8)
  a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
  np.testing.assert_allclose(adversarial.pair_similarities(a, b, metric, 10.0),
                             np.diag(adversarial.similarities(a, b, metric, 10.0)),
                             rtol=1e-5, atol=1e-5)
