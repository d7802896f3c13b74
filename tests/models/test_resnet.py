"""M-ResNet audio tower: shapes, counts, the stride-1 stem, BatchNorm, one step."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jplaylist.models import resnet

FRAMES, MELS = 400, 64


def _init(variant, batch=2, **kwargs):
  model = resnet.Model(variant, **kwargs)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((batch, FRAMES, MELS)))
  return model, variables


@pytest.mark.parametrize("variant,published_trunk", [
    # torchvision resnet50 has 25,557,032 parameters; without the 1000-way fc
    # (2048*1000 + 1000) that is 23,508,032. Our stem sees one input channel
    # instead of three: 7*7*64*(3-1) = 6,272 fewer.
    ("50", 23_508_032 - 6_272),
    # resnet18: 11,689,512 - (512*1000 + 1000) - 7*7*64*2.
    ("18", 11_689_512 - 513_000 - 6_272),
])
def test_parameter_counts_match_published_resnets(variant, published_trunk):
  shapes = jax.eval_shape(lambda: resnet.Model(variant).init(
      jax.random.key(0), jnp.zeros((1, FRAMES, MELS))))
  trunk = resnet.count_params(shapes["params"]["trunk"])
  assert trunk == published_trunk
  if variant == "50":
    assert 23.4e6 < trunk < 23.6e6  # "about 23.5M"
  projection = resnet.count_params(shapes["params"]["projection"])
  assert projection == resnet.stage_channels(variant)[-1] * 128 + 128


def test_stem_keeps_full_resolution_and_trunk_downsamples_by_16():
  model, variables = _init("tiny")
  _, state = jax.jit(functools.partial(model.apply, capture_intermediates=True,
                                       mutable=["intermediates"]))(
                                           variables, jnp.zeros((2, FRAMES, MELS)))
  stem = state["intermediates"]["trunk"]["stem_conv"]["__call__"][0]
  assert stem.shape == (2, FRAMES, MELS, 16)  # stride 1: no halving
  trunk = jax.eval_shape(lambda: resnet.ResNetTrunk("50").init_with_output(
      jax.random.key(0), jnp.zeros((1, FRAMES, MELS)))[0])
  assert trunk.shape == (1, FRAMES // 16, MELS // 16, 2048)


def test_output_is_unit_norm_128d():
  model, variables = _init("tiny", batch=3)
  x = jax.random.normal(jax.random.key(1), (3, FRAMES, MELS))
  out = jax.jit(model.apply)(variables, x)
  assert out.shape == (3, 128) and out.dtype == jnp.float32
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-5)


def test_batchnorm_train_uses_batch_statistics_eval_uses_running_ones():
  model, variables = _init("tiny", batch=4)
  x = jax.random.normal(jax.random.key(2), (4, FRAMES, MELS)) * 3 + 1
  # Evaluation: an example's output does not depend on the rest of the batch.
  evaluate = jax.jit(model.apply)
  full = evaluate(variables, x)
  alone = evaluate(variables, x[:1])
  np.testing.assert_allclose(full[:1], alone, atol=1e-5)
  # Training: batch statistics are used and running statistics move.
  train = jax.jit(functools.partial(_train_apply, model))
  out, updated = train(variables, x)
  out_alone, _ = train(variables, x[:1].repeat(4, 0))
  assert not np.allclose(out[:1], out_alone[:1], atol=1e-3)
  before = variables["batch_stats"]["trunk"]["stem_bn"]["mean"]
  after = updated["batch_stats"]["trunk"]["stem_bn"]["mean"]
  assert not np.allclose(before, after)


def _train_apply(model, variables, x):
  return model.apply(variables, x, train=True, mutable=["batch_stats"])


def test_batchnorm_statistics_are_global_across_devices():
  """Sharded over 8 devices (jit) and per-device with axis_name (shard_map)
  both give the single-device result: statistics over the global batch."""
  model, variables = _init("tiny", batch=8)
  x = jax.random.normal(jax.random.key(3), (8, FRAMES, MELS))
  reference, ref_state = jax.jit(functools.partial(_train_apply, model))(variables, x)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  sharded_x = jax.device_put(x, NamedSharding(mesh, P("data")))
  out, state = jax.jit(functools.partial(_train_apply, model))(variables, sharded_x)
  np.testing.assert_allclose(out, reference, atol=2e-5)
  np.testing.assert_allclose(state["batch_stats"]["trunk"]["stem_bn"]["var"],
                             ref_state["batch_stats"]["trunk"]["stem_bn"]["var"], rtol=1e-4)
  synced = resnet.Model("tiny", axis_name="data")
  per_device = jax.jit(jax.shard_map(
      functools.partial(_train_apply, synced), mesh=mesh,
      in_specs=(P(), P("data")), out_specs=(P("data"), P())))
  out_sm, state_sm = per_device(variables, x)
  np.testing.assert_allclose(out_sm, reference, atol=2e-5)
  np.testing.assert_allclose(state_sm["batch_stats"]["trunk"]["stem_bn"]["mean"],
                             ref_state["batch_stats"]["trunk"]["stem_bn"]["mean"], atol=1e-5)
  # Without the axis name each device would normalise with its own two examples.
  unsynced = jax.jit(jax.shard_map(
      functools.partial(_train_apply, model), mesh=mesh,
      in_specs=(P(), P("data")), out_specs=(P("data"), P("data"))))
  out_local, _ = unsynced(variables, x)
  assert not np.allclose(out_local, reference, atol=1e-3)


def test_remat_blocks_keep_parameters_values_gradients_and_batch_stats():
  # Parameter and BatchNorm trees of every variant are unchanged (so
  # checkpoints load either way); abstract init, so ResNet-50 costs nothing.
  for variant in resnet.VARIANTS:
    trees = [jax.tree.map(lambda x: (x.shape, x.dtype), jax.eval_shape(
        resnet.Model(variant, remat=remat).init, jax.random.key(0),
        jnp.zeros((1, FRAMES, MELS)))) for remat in (False, True)]
    assert trees[0] == trees[1], variant
  model, variables = _init("tiny", batch=3)
  remat = resnet.Model("tiny", remat=True)
  x = jax.random.normal(jax.random.key(4), (3, FRAMES, MELS))

  def loss(model, params):
    z, state = _train_apply(model, {**variables, "params": params}, x)
    return jnp.sum(z * jnp.arange(z.shape[-1])), state

  (value, state), grads = jax.jit(jax.value_and_grad(
      functools.partial(loss, model), has_aux=True))(variables["params"])
  (value_r, state_r), grads_r = jax.jit(jax.value_and_grad(
      functools.partial(loss, remat), has_aux=True))(variables["params"])
  np.testing.assert_allclose(value_r, value, rtol=1e-6)
  # Recomputation may reorder float sums: equal to ~1e-5 of the gradient's
  # scale (a leaf whose gradient nearly cancels to 0 keeps only rounding).
  scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale),
               grads_r, grads)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               state_r, state)
  # One rematerialised region per residual block (tiny: 4), none without remat.
  regions = lambda m: len(re.findall(r"= (?:remat\w*|checkpoint)\[", str(
      jax.make_jaxpr(lambda p: loss(m, p))(variables["params"]))))
  assert regions(remat) == 4 and regions(model) == 0


def test_bfloat16_compute_keeps_float32_params():
  model, variables = _init("tiny", dtype=jnp.bfloat16)
  leaves = jax.tree_util.tree_leaves(variables["params"])
  assert all(leaf.dtype == jnp.float32 for leaf in leaves)
  out = jax.jit(model.apply)(variables, jnp.ones((2, FRAMES, MELS)))
  assert out.dtype == jnp.float32 and np.all(np.isfinite(out))


def test_unknown_variant_is_rejected():
  with pytest.raises(ValueError, match="known: 50, 18, tiny"):
    resnet.decode_variant("101")


def test_one_training_step_of_full_size_resnet50():
  model, variables = _init("50", batch=2)
  x = jax.random.normal(jax.random.key(4), (2, FRAMES, MELS))
  target = jax.nn.one_hot(jnp.array([0, 1]), 128)
  optimizer = optax.adam(1e-3)

  @jax.jit
  def step(params, batch_stats, opt_state):
    def loss_fn(p):
      out, new_state = model.apply({"params": p, "batch_stats": batch_stats}, x,
                                   train=True, mutable=["batch_stats"])
      return -jnp.mean(jnp.sum(out * target, axis=-1)), new_state
    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_state, opt_state, loss, grads

  params = variables["params"]
  new_params, _, _, loss, grads = step(params, variables["batch_stats"],
                                       optimizer.init(params))
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
  changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), params, new_params)
  # Each block's last BatchNorm scale starts at zero (the block starts as the
  # identity), so at step 0 only those scales, the shortcut path and the stem
  # receive gradient; the convolutions inside the blocks follow from step 1.
  assert changed["projection"]["kernel"] and changed["trunk"]["stem_conv"]["kernel"]
  blocks = [k for k in changed["trunk"] if k.startswith("stage")]
  assert len(blocks) == 16
  assert all(changed["trunk"][b]["bn3"]["scale"] for b in blocks)


def test_onset_channel_is_the_rectified_time_difference_and_reaches_the_stem():
  rng = np.random.default_rng(0)
  log_mel = rng.normal(size=(2, 50, 8)).astype(np.float32)
  expected = np.zeros_like(log_mel)
  for t in range(1, 50):  # independent loop over frames
    expected[:, t] = np.maximum(log_mel[:, t] - log_mel[:, t - 1], 0.0)
  np.testing.assert_allclose(resnet.onset_features(jnp.asarray(log_mel)), expected, atol=1e-6)

  model = resnet.Model("tiny", onset_channel=True)
  variables = model.init(jax.random.key(0), jnp.asarray(log_mel))
  stem = variables["params"]["trunk"]["stem_conv"]["kernel"]
  assert stem.shape[2] == 2  # log-mel and its flux
  # The flux channel matters: zeroing its stem weights changes the embedding.
  params = jax.tree.map(lambda x: x, variables["params"])
  params["trunk"]["stem_conv"]["kernel"] = stem.at[:, :, 1].set(0.0)
  with_flux = model.apply(variables, jnp.asarray(log_mel))
  without = model.apply({**variables, "params": params}, jnp.asarray(log_mel))
  assert not np.allclose(with_flux, without, atol=1e-4)
