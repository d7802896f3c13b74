"""The classifier trainer: learns an easy synthetic task (two tone classes) well
above chance, launches from configs/highlights.py through launch.train, and
resumes exactly (a run in two phases equals one run)."""

import os

import jax
import numpy as np
import pytest

from configs import highlights as highlights_config
from configs import hyper_image_genre
from jplaylist import checkpoint as checkpoint_lib
from jplaylist.data import pipeline
from jplaylist.models import crnn
from jplaylist.models import log_mel_classifier
from jplaylist.trainers import classifier
from jplaylist.trainers import optimizer as optimizer_lib
from jplaylist.trainers import summary
from tests.trainers.test_contrastive import _run, _train_command

SAMPLE_RATE = 16_000


def _tones(rng, count, seconds):
  """Class 0: a tone at 200-400 Hz; class 1: at 2-4 kHz; random level, phase
  and length (0.5 s up to the window, zero-padded at the end)."""
  samples = int(seconds * SAMPLE_RATE)
  labels = rng.integers(0, 2, count).astype(np.int32)
  frequency = np.where(labels == 0, rng.uniform(200, 400, count), rng.uniform(2000, 4000, count))
  level = rng.uniform(0.05, 0.5, count)
  time = np.arange(samples) / SAMPLE_RATE
  audio = level[:, None] * np.sin(2 * np.pi * frequency[:, None] * time[None, :]
                                  + rng.uniform(0, 2 * np.pi, (count, 1)))
  lengths = rng.integers(SAMPLE_RATE // 2, samples + 1, count).astype(np.int32)
  audio[np.arange(samples)[None, :] >= lengths[:, None]] = 0.0
  return {"audio": (audio * 32767).astype(np.int16), "audio_length": lengths,
          "label": labels}


def test_losses_and_accuracies_match_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 4)).astype(np.float32) * 3
  labels = rng.integers(0, 4, 6).astype(np.int32)
  loss, metrics = classifier.classification_loss(logits=logits, labels=labels,
                                                 multi_label=False)
  log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  np.testing.assert_allclose(loss, -np.mean(log_softmax[np.arange(6), labels]), rtol=1e-5)
  np.testing.assert_allclose(metrics["accuracy"], np.mean(logits.argmax(1) == labels))
  multi_hot = (rng.uniform(size=(6, 4)) < 0.4).astype(np.float32)
  loss, metrics = classifier.classification_loss(logits=logits, labels=multi_hot,
                                                 multi_label=True)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  expected = -np.mean(multi_hot * np.log(p) + (1 - multi_hot) * np.log(1 - p))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(metrics["accuracy"], np.mean((p > 0.5) == (multi_hot > 0.5)))


def tone_config(config):
  """`config` set for `_tones`: the classes ("low", "high") over 1-s windows."""
  config.labels.classes = ("low", "high")
  config.input.window_seconds = 1.0
  return config


def train_on_tones(config, steps):
  """A classifier of `config`, set by `tone_config`, trained `steps` steps on
  `_tones` batches of 16: (model, forward, state)."""
  tone_config(config)
  config.optimizer.learning_rate = 3e-3
  config.optimizer.warmup_steps = 0
  model = classifier.build_model(config)
  optimizer, schedule = optimizer_lib.make(config.optimizer)
  forward, update = classifier.make_step_functions(config, model, optimizer, schedule)
  state = classifier.init_train_state(model, config, optimizer, jax.random.key(0))
  update = jax.jit(update)
  rng = np.random.default_rng(0)
  for _ in range(steps):
    state, metrics = update(state, _tones(rng, 16, 1.0), jax.random.key(1))
    assert not metrics["nonfinite"]
  return model, forward, state


def test_two_tone_classes_are_learned_well_above_chance():
  config = highlights_config.get_config("runlocal=True")
  model, forward, state = train_on_tones(config, 60)
  assert isinstance(model, crnn.Model)
  test = _tones(np.random.default_rng(123), 128, 1.0)
  logits, attention = jax.jit(lambda p, a, l: model.apply({"params": p}, a, l))(
      state.params, test["audio"], test["audio_length"])
  accuracy = np.mean(np.argmax(logits, -1) == test["label"])
  assert accuracy >= 0.9, accuracy  # chance: 0.5
  _, (metrics, _) = jax.jit(lambda p, b: forward(p, {}, b, jax.random.key(0), False))(
      state.params, test)
  np.testing.assert_allclose(metrics["accuracy"], accuracy, rtol=1e-6)
  # Attention over the valid frames only, whatever the clip's length.
  np.testing.assert_allclose(np.asarray(attention).sum(1), 1.0, rtol=1e-5)
  valid_frames = np.sum(np.asarray(attention) > 0, axis=1)
  assert np.all(valid_frames <= np.ceil(test["audio_length"] / SAMPLE_RATE * 40))


def test_launcher_trains_the_runlocal_highlights_config(tiny_demo, tmp_path):
  # The tiny corpus's validation split is smaller than a batch: evaluate on train.
  out = _run(_train_command(tiny_demo[2], tmp_path, "--config.eval_every=4",
                            "--config.input.eval_split=train",
                            config="configs/highlights.py:runlocal=True"))
  assert "Trained to step 4" in out.stdout, out.stdout[-2000:]
  assert "Held-out classification loss" in out.stdout
  rows = summary.read_metrics(str(tmp_path))
  assert [r["step"] for r in rows] == [1, 2, 3, 4]
  for key in ("loss", "accuracy", "grad_norm", "param_norm", "learning_rate"):
    assert all(np.isfinite(r[key]) for r in rows), key
  evals = summary.read_metrics(str(tmp_path), split="eval")
  assert [r["step"] for r in evals] == [4]
  num_classes = len(highlights_config.DEMO_STYLES)
  np.testing.assert_allclose(evals[0]["uniform_loss"], np.log(num_classes))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]
  # The trained model gives an attention curve for a window of any content.
  model, params, config = classifier.restore(str(tmp_path))
  samples = int(config.input.window_seconds * SAMPLE_RATE)
  audio = np.zeros((1, samples), np.int16)
  audio[0, :samples // 2] = (np.random.default_rng(0).normal(size=samples // 2) * 1000)
  logits, attention = classifier.attention(model, params, audio, np.array([samples // 2]))
  frames = int(config.input.window_seconds * config.model.frames_per_second)
  assert logits.shape == (1, num_classes) and attention.shape == (1, frames)
  np.testing.assert_allclose(attention.sum(), 1.0, rtol=1e-5)
  # The second half of the window is padding: no attention there.
  assert np.all(attention[0, frames // 2:] == 0)


def _config(data_dir, **overrides):
  config = highlights_config.get_config("runlocal=True")
  config.input.data_dir = data_dir
  config.eval_every = 0
  config.update(overrides)
  return config


def test_a_run_in_two_phases_equals_one_run(tiny_demo, tmp_path):
  data_dir = tiny_demo[2]
  straight, phased = str(tmp_path / "straight"), str(tmp_path / "phased")
  classifier.train_and_evaluate(_config(data_dir, num_train_steps=6), straight)
  classifier.train_and_evaluate(_config(data_dir, num_train_steps=3), phased)
  result = classifier.train_and_evaluate(_config(data_dir, num_train_steps=6), phased)
  assert result["step"] == 6
  for a, b in zip(jax.tree_util.tree_leaves(checkpoint_lib.restore_params(straight)),
                  jax.tree_util.tree_leaves(checkpoint_lib.restore_params(phased)),
                  strict=True):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
  straight_rows = summary.read_metrics(straight)
  phased_rows = summary.read_metrics(phased)
  assert [r["step"] for r in phased_rows] == [1, 2, 3, 4, 5, 6]
  # The input continued where it stopped: the same batches, not the first again.
  for a, b in zip(straight_rows, phased_rows, strict=True):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=0, atol=1e-6)


def test_a_label_outside_the_classes_is_a_clear_error(tiny_demo, tmp_path):
  config = _config(tiny_demo[2], num_train_steps=1)
  config.labels.classes = ("Baroque",)
  try:
    classifier.train_and_evaluate(config, str(tmp_path))
  except ValueError as e:
    assert "style=" in str(e) and "is not one of the classes ['Baroque']" in str(e)
  else:
    raise AssertionError("a record of another style was accepted")


@pytest.mark.parametrize("classes, message", [((), "labels.classes is empty"),
                                              (("Baroque", "Celtic", "Baroque"),
                                               r"labels.classes repeats \['Baroque'\]")])
def test_empty_or_repeated_classes_are_refused(classes, message):
  with pytest.raises(ValueError, match=message):
    pipeline.LabelOptions(field="style", classes=classes)


def test_a_compute_dtype_other_than_float32_is_refused():
  config = highlights_config.get_config("runlocal=True")
  config.compute_dtype = "bfloat16"
  with pytest.raises(ValueError, match="compute_dtype='bfloat16'"):
    classifier.make_task(config, None)


def test_the_mresnet_comparison_learns_tones_and_updates_its_batch_statistics():
  config = hyper_image_genre.get_config("runlocal=True,model=mresnet")
  model, forward, state = train_on_tones(config, 30)
  assert isinstance(model, log_mel_classifier.Model)
  initial = classifier.init_variables(model, config, jax.random.key(0))["batch_stats"]
  moved = [float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree_util.tree_leaves(initial), jax.tree_util.tree_leaves(state.batch_stats),
      strict=True)]
  assert min(moved) > 0, moved  # every running statistic was updated
  test = _tones(np.random.default_rng(7), 64, 1.0)
  _, (metrics, unchanged) = jax.jit(
      lambda s, b: forward(s.params, s.batch_stats, b, jax.random.key(0), False))(state, test)
  assert float(metrics["accuracy"]) > 0.9, metrics
  # Evaluation reads the running statistics and leaves them as they are.
  for a, b in zip(jax.tree_util.tree_leaves(unchanged),
                  jax.tree_util.tree_leaves(state.batch_stats), strict=True):
    np.testing.assert_array_equal(a, b)
