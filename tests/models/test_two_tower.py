"""The two-tower model: towers by config, no shared weights, the temperature."""

import re

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


def _quantised(audio: np.ndarray) -> np.ndarray:
  """Float waveforms -> the int16 samples a dataset would store."""
  return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def test_int16_audio_with_lengths_embeds_as_float_audio_with_a_mask(resnet_model):
  model, variables = resnet_model
  rng = np.random.default_rng(3)
  audio = rng.normal(scale=0.1, size=(3, SAMPLES)).astype(np.float32)
  lengths = np.array([SAMPLES, 3 * 16_000, 73_001], np.int32)
  audio[np.arange(SAMPLES)[None, :] >= lengths[:, None]] = 0.0  # end padding
  stored = _quantised(audio)
  # The reference: the host-side conversion the pipeline used to ship.
  as_float = stored.astype(np.float32) / np.float32(32768.0)
  mask = np.arange(SAMPLES)[None, :] < lengths[:, None]
  embed = jax.jit(lambda v, a, m: model.apply(v, a, m, method=model.embed_audio))
  reference = np.asarray(embed(variables, as_float, mask))
  got = np.asarray(embed(variables, stored, lengths))
  np.testing.assert_allclose(got, reference, atol=1e-6)
  # Against the unquantised audio the difference is int16 rounding only.
  np.testing.assert_allclose(got, np.asarray(embed(variables, audio, mask)), atol=1e-3)
  # The lengths are read: without them the short rows pool over padding too.
  unmasked = np.asarray(jax.jit(lambda v, a: model.apply(v, a, method=model.embed_audio))(
      variables, stored))
  np.testing.assert_allclose(unmasked[0], got[0], atol=1e-6)
  assert np.max(np.abs(unmasked[1:] - got[1:])) > 1e-3
  # The whole model takes the batch as the pipeline ships it.
  _, ids, text_mask = _batch(3)
  za, _, _ = jax.jit(model.apply)(variables, stored, ids, text_mask, lengths)
  np.testing.assert_allclose(za, reference, atol=1e-6)
  with pytest.raises(ValueError, match="int16 or floating"):
    jax.eval_shape(lambda: two_tower.waveform_to_float(jnp.zeros((1, 4), jnp.int32)))


def _loss_and_grads(model, variables, batch, key):
  """A contrastive-style scalar of a train-mode forward, and its gradients."""
  audio, ids, mask, lengths = batch

  def loss_fn(params):
    (za, zt, temperature), state = model.apply(
        {**variables, "params": params}, audio, ids, mask, lengths, train=True,
        mutable=["batch_stats"], rngs={"specaugment": key, "dropout": key})
    logits = za @ zt.T / temperature
    loss = -jnp.mean(jnp.diag(jax.nn.log_softmax(logits, axis=1)))
    return loss, state
  (loss, state), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      variables["params"])
  return loss, state, grads


def _remat_regions(model, variables, batch) -> int:
  """How many rematerialised regions a train-mode forward pass holds."""
  audio, ids, mask, lengths = batch
  key = jax.random.key(0)
  jaxpr = str(jax.make_jaxpr(lambda v: model.apply(
      v, audio, ids, mask, lengths, train=True, mutable=["batch_stats"],
      rngs={"specaugment": key, "dropout": key}))(variables))
  return len(re.findall(r"= (?:remat\w*|checkpoint)\[", jaxpr))


@pytest.mark.parametrize("audio_tower", ["resnet", "ast"])
def test_remat_keeps_loss_gradients_and_batch_statistics(audio_tower):
  plain = _tiny(audio_tower)
  remat = _tiny(audio_tower, audio_remat=True, text_remat=True)
  variables = jax.jit(lambda k: two_tower.init(plain, k, batch_size=2))(jax.random.key(0))
  remat_variables = jax.jit(lambda k: two_tower.init(remat, k, batch_size=2))(
      jax.random.key(0))
  # Same parameters, under the same names: checkpoints load either way.
  jax.tree_util.tree_map(np.testing.assert_array_equal, variables, remat_variables)
  audio, ids, mask = _batch()
  batch = (_quantised(audio), ids, mask, np.array([SAMPLES, 50_000], np.int32))
  key = jax.random.key(7)
  loss, state, grads = _loss_and_grads(plain, variables, batch, key)
  loss_r, state_r, grads_r = _loss_and_grads(remat, variables, batch, key)
  np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
  # Recomputation may reorder float sums: equal to ~1e-5 of each leaf's scale.
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                              atol=1e-5 * float(np.max(np.abs(b))) + 1e-9),
      grads_r, grads)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                         state_r, state)
  assert float(optax_norm(grads)) > 0
  # Remat is per layer: one region per residual block (tiny ResNet: 4) or
  # AST block (tiny: 2), and per BERT layer (tiny: 2); none without it.
  audio_layers = 4 if audio_tower == "resnet" else 2
  assert _remat_regions(remat, variables, batch) == audio_layers + 2
  assert _remat_regions(plain, variables, batch) == 0
  assert _remat_regions(_tiny(audio_tower, audio_remat=True), variables, batch) == audio_layers
  assert _remat_regions(_tiny(audio_tower, text_remat=True), variables, batch) == 2


def optax_norm(tree):
  return jnp.sqrt(sum(jnp.sum(x.astype(jnp.float32) ** 2)
                      for x in jax.tree_util.tree_leaves(tree)))


def test_remat_options_come_from_the_config():
  config = common.model(audio_variant="tiny", text_variant="tiny")
  assert config.audio_remat is False and config.text_remat is False
  config.audio_remat = True
  model = two_tower.Model.from_config(config)
  assert model.audio_remat and not model.text_remat
