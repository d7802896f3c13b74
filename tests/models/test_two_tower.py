"""The two-tower model: towers by config, no shared weights, the temperature."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from jplaylist.models import two_tower

SAMPLES = 16_000 * 10


def _tiny(audio_tower="resnet", **overrides):
  config = common.model(audio_tower=audio_tower, audio_variant="tiny",
                        text_variant="tiny", initial_temperature=0.07)
  config.update(overrides)
  return two_tower.Model.from_config(config)


@pytest.fixture(scope="module")
def resnet_model():
  model = _tiny()
  return model, jax.jit(lambda k: two_tower.init(model, k, batch_size=2))(jax.random.key(0))


def _batch(batch=2, length=16):
  rng = np.random.default_rng(0)
  audio = rng.normal(scale=0.1, size=(batch, SAMPLES)).astype(np.float32)
  ids = rng.integers(1000, 2000, size=(batch, length)).astype(np.int32)
  ids[:, 0] = 101
  mask = np.ones_like(ids)
  mask[-1, 10:] = 0  # the last text is padded
  ids[-1, 10:] = 0
  return audio, ids, mask


def test_towers_share_no_weights_and_embeddings_are_unit_norm(resnet_model):
  model, variables = resnet_model
  params = variables["params"]
  assert set(params) == {"audio", "text", "temperature_raw"}
  audio_leaves = {id(x) for x in jax.tree_util.tree_leaves(params["audio"])}
  text_leaves = {id(x) for x in jax.tree_util.tree_leaves(params["text"])}
  assert not audio_leaves & text_leaves
  za, zt, temperature = jax.jit(model.apply)(variables, *_batch())
  assert za.shape == zt.shape == (2, 128)
  np.testing.assert_allclose(np.linalg.norm(za, axis=1), 1.0, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(zt, axis=1), 1.0, atol=1e-5)
  np.testing.assert_allclose(temperature, 0.07, rtol=1e-5)
  # Changing the text leaves the audio embedding alone, and vice versa.
  audio, ids, mask = _batch()
  za2, zt2, _ = jax.jit(model.apply)(variables, audio, ids[:, ::-1].copy(), mask)
  np.testing.assert_array_equal(za, za2)
  assert not np.allclose(zt, zt2)


def test_audio_tower_is_chosen_by_config():
  model = _tiny("ast")
  variables = jax.jit(lambda k: two_tower.init(model, k))(jax.random.key(0))
  assert "encoder" in variables["params"]["audio"]
  za = jax.jit(lambda v, a: model.apply(v, a, method=model.embed_audio))(
      variables, _batch(1)[0])
  assert za.shape == (1, 128)
  with pytest.raises(ValueError, match="unknown audio tower"):
    jax.eval_shape(lambda: two_tower.init(_tiny(audio_tower="cnn"), jax.random.key(0)))


def test_temperature_stays_in_unit_interval_and_its_gradient_is_right():
  for raw in (-30.0, -2.0, 0.0, 3.0, 50.0):
    t = float(two_tower.temperature_from_raw(jnp.float32(raw)))
    assert 0.0 < t <= 1.0
  for t in (0.01, 0.07, 0.5, 0.99):
    raw = two_tower.raw_from_temperature(t)
    np.testing.assert_allclose(two_tower.temperature_from_raw(jnp.float32(raw)), t, rtol=1e-5)
  # d/draw exp(-softplus(raw)) = -exp(-softplus(raw)) * sigmoid(raw).
  raw = 0.7
  grad = jax.grad(lambda r: two_tower.temperature_from_raw(r))(raw)
  expected = -np.exp(-np.log1p(np.exp(raw))) / (1 + np.exp(-raw))
  np.testing.assert_allclose(grad, expected, rtol=1e-5)
  with pytest.raises(ValueError):
    two_tower.raw_from_temperature(1.5)


def test_specaugment_and_dropout_only_in_training(resnet_model):
  model, variables = resnet_model
  audio, ids, mask = _batch()
  evaluate = jax.jit(lambda v, *b: model.apply(v, *b))
  np.testing.assert_array_equal(evaluate(variables, audio, ids, mask)[0],
                                evaluate(variables, audio, ids, mask)[0])
  def train(key):
    out, _ = model.apply(variables, audio, ids, mask, train=True, mutable=["batch_stats"],
                         rngs={"specaugment": key, "dropout": key})
    return out
  a, b = jax.jit(train)(jax.random.key(1)), jax.jit(train)(jax.random.key(2))
  assert not np.allclose(a[0], b[0]) and not np.allclose(a[1], b[1])
  log_mel = jax.jit(lambda v, x: model.apply(v, x, method=model.log_mel))(variables, audio)
  assert log_mel.shape == (2, 400, 64)


def test_resnet_options_are_rejected_for_ast():
  model = two_tower.Model(audio_tower="ast", audio_variant="tiny", text_variant="tiny",
                          frontend="ast", audio_onset_channel=True)
  with pytest.raises(ValueError, match="audio_onset_channel"):
    two_tower.init(model, jax.random.key(0))
