"""The optimizer: step decay, warmup, decoupled weight decay, freezing, accumulation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import common
from jplaylist.trainers import optimizer as optimizer_lib


def test_step_decay_is_x09_every_40k_steps_after_warmup():
  config = common.optimizer(learning_rate=5e-5, warmup_steps=1000)
  schedule = optimizer_lib.learning_rate_schedule(config)
  np.testing.assert_allclose(schedule(0), 0.0)
  np.testing.assert_allclose(schedule(500), 2.5e-5, rtol=1e-6)
  np.testing.assert_allclose(schedule(1000), 5e-5, rtol=1e-6)
  np.testing.assert_allclose(schedule(1000 + 39_999), 5e-5, rtol=1e-6)
  np.testing.assert_allclose(schedule(1000 + 40_000), 4.5e-5, rtol=1e-6)
  np.testing.assert_allclose(schedule(1000 + 200_000), 5e-5 * 0.9**5, rtol=1e-6)
  no_warmup = optimizer_lib.learning_rate_schedule(common.optimizer(learning_rate=4e-5))
  np.testing.assert_allclose(no_warmup(0), 4e-5, rtol=1e-6)


def _params():
  return {"audio": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)},
          "text": {"encoder": {"kernel": jnp.ones((2, 2))}},
          "temperature_raw": jnp.asarray(2.0)}


def test_weight_decay_is_decoupled_and_skips_biases_and_scalars():
  config = common.optimizer(learning_rate=0.1, weight_decay=0.5)
  optimizer, _ = optimizer_lib.make(config)
  params = _params()
  zero = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = optimizer.update(zero, optimizer.init(params), params)
  # Zero gradient: only decay moves weights, by -lr * wd * w, and only matrices.
  np.testing.assert_allclose(updates["audio"]["kernel"], -0.05)
  np.testing.assert_allclose(updates["audio"]["bias"], 0.0)
  np.testing.assert_allclose(updates["temperature_raw"], 0.0)


def test_freeze_keeps_a_tower_fixed_for_n_steps_without_decay():
  config = common.optimizer(learning_rate=0.1, weight_decay=0.5)
  config.freeze = (("^text/", 2),)
  optimizer, _ = optimizer_lib.make(config)
  params = _params()
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  state = optimizer.init(params)
  moved = []
  for _ in range(3):
    updates, state = optimizer.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    moved.append(float(jnp.abs(updates["text"]["encoder"]["kernel"]).max()))
  assert moved[0] == moved[1] == 0.0 and moved[2] > 0.0
  forever, _ = optimizer_lib.make(common.optimizer(learning_rate=0.1, weight_decay=0.5),
                                  frozen=("^text/encoder/",))
  updates, _ = forever.update(grads, forever.init(_params()), _params())
  assert float(jnp.abs(updates["text"]["encoder"]["kernel"]).max()) == 0.0
  assert float(jnp.abs(updates["audio"]["kernel"]).max()) > 0.0


def test_gradient_accumulation_equals_one_step_on_the_mean_gradient():
  config = common.optimizer(learning_rate=0.1, weight_decay=0.0)
  config.accumulation_steps = 2
  accumulated, _ = optimizer_lib.make(config)
  single, _ = optimizer_lib.make(common.optimizer(learning_rate=0.1, weight_decay=0.0))
  params = _params()
  g1 = jax.tree_util.tree_map(lambda x: jnp.full_like(x, 0.3), params)
  g2 = jax.tree_util.tree_map(lambda x: jnp.full_like(x, -0.1), params)
  state = accumulated.init(params)
  u1, state = accumulated.update(g1, state, params)
  assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree_util.tree_leaves(u1))
  u2, state = accumulated.update(g2, state, params)
  mean = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, g1, g2)
  expected, _ = single.update(mean, single.init(params), params)
  for got, want in zip(jax.tree_util.tree_leaves(u2), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_text_learning_rate_scale_scales_only_text_updates():
  config = common.optimizer(learning_rate=0.1, weight_decay=0.5)
  params = _params()
  grads = jax.tree_util.tree_map(lambda p: 0.3 * jnp.ones_like(p), params)
  plain, _ = optimizer_lib.make(config)
  scaled, _ = optimizer_lib.make(config, learning_rate_scales=(("^text/", 0.1),))
  reference, _ = plain.update(grads, plain.init(params), params)
  updates, _ = scaled.update(grads, scaled.init(params), params)
  # Adam step and weight decay alike: text updates x0.1, the rest unchanged.
  np.testing.assert_allclose(updates["text"]["encoder"]["kernel"],
                             0.1 * np.asarray(reference["text"]["encoder"]["kernel"]), rtol=1e-6)
  np.testing.assert_allclose(updates["audio"]["kernel"], reference["audio"]["kernel"])
  np.testing.assert_allclose(updates["temperature_raw"], reference["temperature_raw"])
  assert np.all(np.asarray(reference["text"]["encoder"]["kernel"]) != 0)
  with np.testing.assert_raises(ValueError):
    optimizer_lib.make(config, learning_rate_scales=(("^text/", -1.0),))


_WEIGHT_LAYERS = ("Dense", "DenseGeneral", "Conv")


def _init_with_layer_types(model):
  """The abstract parameter tree of `model` and {module path: layer class},
  recorded while flax builds it."""
  from flax import linen as nn  # pylint: disable=g-import-not-at-top
  from jplaylist.models import two_tower  # pylint: disable=g-import-not-at-top
  layers = {}

  def record(next_fun, args, kwargs, context):
    layers[tuple(context.module.path)] = type(context.module).__name__
    return next_fun(*args, **kwargs)
  with nn.intercept_methods(record):
    variables = jax.eval_shape(lambda: two_tower.init(model, jax.random.key(0)))
  return dict(variables["params"]), layers


def _decaying_leaves(params) -> tuple[set[str], set[str]]:
  from jplaylist import sharding  # pylint: disable=g-import-not-at-top
  decays, spared = set(), set()
  mask = optimizer_lib.decay_mask(params)
  for path, leaf in jax.tree_util.tree_leaves_with_path(mask):
    (decays if leaf else spared).add(sharding.path_str(path))
  return decays, spared


def _model_trees():
  """The demo model (ResNet + MiniLM BERT), M-AST (AST + BERT-base), and the
  tiny runlocal demo, with the trainer's sigmoid-loss bias added."""
  from configs import demo as demo_config  # pylint: disable=g-import-not-at-top
  from configs import mulan as mulan_config  # pylint: disable=g-import-not-at-top
  from jplaylist.models import two_tower  # pylint: disable=g-import-not-at-top
  for name, config in (("demo", demo_config.get_config()),
                       ("demo runlocal", demo_config.get_config("runlocal=True")),
                       ("mulan ast", mulan_config.get_config("audio=ast"))):
    params, layers = _init_with_layer_types(two_tower.build(config))
    params["loss_bias"] = jnp.zeros([], jnp.float32)
    yield name, params, layers


def test_weight_decay_reaches_dense_and_conv_kernels_only_on_the_real_models():
  for name, params, layers in _model_trees():
    decays, spared = _decaying_leaves(params)
    # Independent reference: a leaf decays when flax created it as the kernel
    # of a Dense or Conv layer (from the layer's class, not the leaf's name).
    expected = set()
    for path, _ in jax.tree_util.tree_leaves_with_path(params):
      keys = tuple(str(k.key) for k in path)
      if keys[-1] == "kernel" and layers.get(keys[:-1]) in _WEIGHT_LAYERS:
        expected.add("/".join(keys))
    assert decays == expected, name
    assert len(decays) > 10, name
    for spared_leaf in ("temperature_raw", "loss_bias"):
      assert spared_leaf in spared, name
    # Norms, embedding tables and learned tokens are spared, by kind:
    kinds = {"norm": ("LayerNorm/scale", "LayerNorm/bias", "/scale", "/bias"),
             "embedding table": ("word_embeddings/embedding",
                                 "position_embeddings/embedding",
                                 "token_type_embeddings/embedding"),
             "bias": ("/bias",)}
    for kind, suffixes in kinds.items():
      found = [p for p in spared if p.endswith(suffixes)]
      assert found, (name, kind)
      assert not any(p.endswith(suffixes) for p in decays), (name, kind)
    if name == "mulan ast":
      for token in ("audio/encoder/embeddings/cls_token",
                    "audio/encoder/embeddings/position_embeddings"):
        assert token in spared, token
      assert "audio/encoder/embeddings/patch_embeddings/kernel" in decays
    else:
      # ResNet BatchNorm scales and offsets, conv kernels decaying.
      assert any("bn" in p and p.endswith("/scale") for p in spared), name
      assert any("conv" in p and p.endswith("/kernel") for p in decays), name


def test_weight_decay_leaves_embeddings_and_tokens_alone():
  config = common.optimizer(learning_rate=0.1, weight_decay=0.5)
  optimizer, _ = optimizer_lib.make(config)
  params = {"text": {"word_embeddings": {"embedding": jnp.ones((5, 2))},
                     "dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
                     "LayerNorm": {"scale": jnp.ones(2), "bias": jnp.ones(2)}},
            "audio": {"cls_token": jnp.ones((1, 1, 2)),
                      "position_embeddings": jnp.ones((1, 3, 2)),
                      "conv": {"kernel": jnp.ones((3, 3, 1, 2))}},
            "temperature_raw": jnp.asarray(2.0), "loss_bias": jnp.asarray(-10.0)}
  zero = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = optimizer.update(zero, optimizer.init(params), params)
  moved = {path: float(jnp.abs(u).max()) for path, u in
           jax.tree_util.tree_leaves_with_path(updates)}
  moved = {"/".join(str(k.key) for k in path): v for path, v in moved.items()}
  assert {p for p, v in moved.items() if v > 0} == {"text/dense/kernel", "audio/conv/kernel"}
  np.testing.assert_allclose(updates["audio"]["conv"]["kernel"], -0.05)
