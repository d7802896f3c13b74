"""The user-anchored trainer (issue 16, item 4).

The hinge, binary and softmax losses equal numpy loops; examples carry the
liked track and n of the same user's disliked ones; a planted problem (two
demographic groups, each liking tones of one pitch band) is learned well
above chance through the whole model; a run resumes exactly; the launchers
train and write the report with its embedding export.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import user_anchored as user_anchored_config
from jplaylist import checkpoint as checkpoint_lib
from jplaylist import library_index
from jplaylist.data import pipeline
from jplaylist.models import user_anchored as model_lib
from jplaylist.trainers import loop
from jplaylist.trainers import optimizer as optimizer_lib
from jplaylist.trainers import summary
from jplaylist.trainers import user_anchored
from tests.trainers.test_contrastive import _run, _train_command


def _config(data_dir, arg="", **overrides):
  config = user_anchored_config.get_config("runlocal=True" + (f",{arg}" if arg else ""))
  config.input.data_dir = data_dir
  config.eval_every = 0
  config.update(overrides)
  return config


# ---------------------------------------------------------------- losses ----
def _scores(seed=0, rows=6, negatives=4):
  return np.random.default_rng(seed).uniform(-1, 1, (rows, 1 + negatives)).astype(np.float32)


@pytest.mark.parametrize("negatives", [1, 4])
def test_hinge_loss_equals_a_numpy_loop(negatives):
  scores = _scores(negatives=negatives)
  expected = np.mean([max(0.0, 0.2 - row[0] + row[j]) for row in scores
                      for j in range(1, negatives + 1)])
  loss, _ = user_anchored.hinge_loss(scores=jnp.asarray(scores), margin=0.2)
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_binary_and_softmax_losses_equal_numpy():
  scores = _scores(1).astype(np.float64)
  logits = 5.0 * scores
  bce = lambda x, y: -(y * np.log(1 / (1 + np.exp(-x))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-x))))
  expected = 0.5 * (np.mean(bce(logits[:, 0], 1.0)) + np.mean(bce(logits[:, 1:], 0.0)))
  loss, _ = user_anchored.binary_loss(scores=jnp.asarray(scores, jnp.float32), scale=5.0)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  expected = np.mean([np.log(np.exp(row).sum()) - row[0] for row in logits])
  loss, _ = user_anchored.softmax_loss(scores=jnp.asarray(scores, jnp.float32), scale=5.0)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  config = _config("unused")
  _, metrics = user_anchored.objective(config, jnp.asarray(scores, jnp.float32))
  np.testing.assert_allclose(metrics["accuracy"], np.mean(scores[:, 0] > scores[:, 1:].max(1)))


# ------------------------------------------------------ a planted problem ----
def test_a_planted_problem_is_learned_above_chance():
  """Group g likes tones of band g: only the audio tells the tracks apart."""
  rate, window = 16_000, 2400
  rng = np.random.default_rng(0)
  time = np.arange(window) / rate
  bands = ((200.0, 400.0), (2000.0, 4000.0))

  def tones(band, count):
    freq = rng.uniform(*bands[band], (count, 1))
    wave = 0.5 * np.sin(2 * np.pi * freq * time + rng.uniform(0, 6.3, (count, 1)))
    return (wave + 0.05 * rng.standard_normal(wave.shape)) * 32767 * 0.5

  def batch(size):
    group = rng.integers(0, 2, size)
    audio = np.stack([np.stack([tones(g, 1)[0], tones(1 - g, 1)[0]]) for g in group])
    return {"user": group.astype(np.int32), "history": np.zeros((size, 1), np.int32),
            "history_mask": np.zeros((size, 1), bool),
            "demographics": np.eye(2, dtype=np.float32)[group],
            "audio": audio.astype(np.int16)}

  config = _config("unused", "negatives=1")
  config.optimizer.learning_rate = 3e-3
  config.optimizer.warmup_steps = 0
  model = model_lib.Model(user="branch", num_tracks=2, embed_dim=8, track_dim=4,
                          user_hidden=(16,), window_seconds=window / rate, num_mels=32,
                          channels=(4, 4, 8, 8, 8))
  optimizer, schedule = optimizer_lib.make(config.optimizer)
  forward, update = user_anchored.make_step_functions(config, model, optimizer, schedule)
  example = batch(2)
  variables = model.init(jax.random.key(0),
                         {k: v for k, v in example.items() if k != "audio"},
                         jnp.zeros((2, window), jnp.int16))
  state = loop.TrainState(step=jnp.zeros([], jnp.int32), params=variables["params"],
                          batch_stats=variables["batch_stats"],
                          opt_state=optimizer.init(variables["params"]))
  update = jax.jit(update)
  held_out = batch(64)
  accuracy = jax.jit(lambda s, b: forward(s.params, s.batch_stats, b, False)[1][0]["accuracy"])
  before = float(accuracy(state, held_out))
  for _ in range(30):
    state, _ = update(state, batch(8), jax.random.key(0))
  after = float(accuracy(state, held_out))   # with the running statistics
  assert after >= 0.9, (before, after)


# ----------------------------------------------------------- on the corpus ----
def test_examples_pair_a_liked_track_with_the_users_disliked_ones(tiny_demo):
  config = _config(tiny_demo[2])
  world = user_anchored.build_world(config)
  assert world.split.new_track.sum() == sum(s == "test" for s in world.track_split) > 0
  options = pipeline.PipelineOptions(batch_size=4, window_seconds=1.0, seed=0)
  loader = user_anchored.make_loader(world, "train", options, negatives=3)
  rows = user_anchored.trainable_rows(world, "train")
  batch = next(iter(loader))
  assert batch["audio"].shape == (4, 4, 16000) and batch["audio"].dtype == np.int16
  users = world.users
  for i in range(4):
    u = int(batch["user"][i])
    np.testing.assert_array_equal(batch["history"][i], world.history[u])
    np.testing.assert_array_equal(batch["demographics"][i], users.demographics[u])
  # Every trainable row is a liked train interaction of a user with disliked train tracks.
  assert users.liked[rows].all() and np.isin(rows, world.split.parts["train"]).all()
  train = world.split.parts["train"]
  for row in rows:
    assert (~users.liked[train] & (users.user[train] == users.user[row])).any()


def test_a_run_in_two_phases_equals_one_run(tiny_demo, tmp_path):
  straight, phased = str(tmp_path / "straight"), str(tmp_path / "phased")
  user_anchored.train_and_evaluate(_config(tiny_demo[2]), straight)
  user_anchored.train_and_evaluate(_config(tiny_demo[2], num_train_steps=2), phased)
  result = user_anchored.train_and_evaluate(_config(tiny_demo[2]), phased)
  assert result["step"] == 4
  a, _ = checkpoint_lib.restore_on_host(straight)
  b, _ = checkpoint_lib.restore_on_host(phased)
  for x, y in zip(jax.tree_util.tree_leaves((a["params"], a["opt_state"])),
                  jax.tree_util.tree_leaves((b["params"], b["opt_state"])), strict=True):
    np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
  for x, y in zip(jax.tree_util.tree_leaves(a["batch_stats"]),
                  jax.tree_util.tree_leaves(b["batch_stats"]), strict=True):
    np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
  initial = user_anchored.restore(straight, step=2)[1]
  for kind in ("params", "batch_stats"):   # steps 3-4 moved both
    assert any(not np.allclose(x, y) for x, y in zip(jax.tree_util.tree_leaves(initial[kind]),
                                                     jax.tree_util.tree_leaves(a[kind])))
  for x, y in zip(summary.read_metrics(straight), summary.read_metrics(phased), strict=True):
    np.testing.assert_allclose(x["loss"], y["loss"], rtol=0, atol=1e-6)


def test_bad_settings_are_refused(tiny_demo):
  for arg, message in (("loss=triplet", "loss.kind='triplet'"),
                       ("user=graph", "model.user='graph'"), ("negatives=0", "at least 1")):
    with pytest.raises(ValueError, match=message):
      user_anchored.make_task(_config(tiny_demo[2], arg), None)


def test_launch_train_then_evaluate_writes_the_report_and_the_export(tiny_demo, tmp_path):
  out = _run(_train_command(tiny_demo[2], tmp_path,
                            config="configs/user_anchored.py:runlocal=True,user=lookup"))
  assert "Trained to step 4" in out.stdout, out.stdout[-2000:]
  report_dir = tmp_path / "report"
  out = _run([out.args[0], "-m", "launch.evaluate", f"--workdir={tmp_path}",
              f"--data_dir={tiny_demo[2]}", f"--output_dir={report_dir}"])
  assert "Audio embeddings (library index)" in out.stdout, out.stdout[-2000:]
  metrics = json.loads((report_dir / "metrics.json").read_text())
  assert set(metrics) == {"trained", "random init"}
  trained = metrics["trained"]
  assert 0.0 <= trained["test"]["auc"] <= 1.0
  assert trained["unseen_users"] is None  # DCUE has no embedding for an unseen user
  assert trained["fans_seen_users"]["candidates"] > 0
  text = (report_dir / "report.md").read_text()
  assert "| trained | new_tracks |" in text and "| random ranking |" in text
  index = library_index.load(str(report_dir / "audio_embeddings.npz"))
  assert index.embeddings.shape == (len(index), 40)
  np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, rtol=1e-5)
  assert {a["split"] for a in index.attributes} == {"train", "validation", "test"}
  assert os.path.exists(report_dir / "report.md")
