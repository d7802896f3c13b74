"""The hyper-image CNN: the paper's layers and shapes, local response
normalisation against numpy, padding read as silence, momentum SGD, and two
tone classes learned well above chance through the classifier trainer."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import hyper_image_genre
from jplaylist.models import hyper_cnn
from jplaylist.trainers import optimizer as optimizer_lib
from tests.trainers.test_classifier import _tones
from tests.trainers.test_classifier import tone_config
from tests.trainers.test_classifier import train_on_tones


def test_local_response_norm_matches_its_formula():
  x = np.random.default_rng(0).normal(size=(2, 3, 11)).astype(np.float32)
  want = np.empty_like(x)
  for c in range(11):
    window = x[..., max(0, c - 4):c + 5] ** 2
    want[..., c] = x[..., c] / (1.0 + 0.001 / 9.0 * window.sum(-1)) ** 0.75
  np.testing.assert_allclose(hyper_cnn.local_response_norm(jnp.asarray(x)), want, rtol=1e-6)


def _config():
  return tone_config(hyper_image_genre.get_config("runlocal=True"))


def test_layers_and_outputs_are_the_papers():
  config = _config()
  model = hyper_cnn.build(config)
  params = jax.jit(lambda rng: hyper_cnn.init(model, rng, window_seconds=1.0))(
      jax.random.key(0))["params"]
  shapes = jax.tree_util.tree_map(lambda p: p.shape, params)
  assert shapes["conv1"]["kernel"] == (15, 15, 1, 64)
  assert shapes["conv2"]["kernel"] == (5, 5, 64, 64)
  assert shapes["fc1"]["kernel"][1] == 384 and shapes["fc2"]["kernel"] == (384, 192)
  assert shapes["output"]["kernel"] == (192, 2)
  audio = (np.random.default_rng(1).normal(size=(3, 16_000)) * 3000).astype(np.int16)
  apply = jax.jit(model.apply)  # one compiled program; op by op takes minutes
  logits, embedding = apply({"params": params}, audio, np.full(3, 16_000, np.int32))
  assert logits.shape == (3, 2) and embedding.shape == (3, 192)
  assert np.all(np.asarray(embedding) >= 0)  # after the ReLU
  # Padding is silence: samples past audio_length do not matter.
  noisy = audio.copy()
  noisy[:, 8_000:] = 12_345
  lengths = np.full(3, 8_000, np.int32)
  a = apply({"params": params}, audio, lengths)[0]
  b = apply({"params": params}, noisy, lengths)[0]
  np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_momentum_sgd_steps():
  config = _config().optimizer
  config.warmup_steps = 0
  config.weight_decay = 0.0
  optimizer, _ = optimizer_lib.make(config)
  params = {"w": jnp.array([1.0, -2.0])}
  state = optimizer.init(params)
  grads = {"w": jnp.array([0.5, 0.25])}
  velocity = np.zeros(2)
  w = np.array([1.0, -2.0])
  for _ in range(3):
    updates, state = optimizer.update(grads, state, params)
    params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
    velocity = 0.9 * velocity + np.array([0.5, 0.25])
    w = w - config.learning_rate * velocity
  np.testing.assert_allclose(params["w"], w, rtol=1e-6)


def test_two_tone_classes_are_learned_well_above_chance():
  model, forward, state = train_on_tones(_config(), 30)
  assert isinstance(model, hyper_cnn.Model)
  _, (metrics, _) = jax.jit(
      lambda s, b: forward(s.params, s.batch_stats, b, jax.random.key(0), False))(
          state, _tones(np.random.default_rng(99), 64, 1.0))
  assert float(metrics["accuracy"]) > 0.9, metrics
