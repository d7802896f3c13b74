"""Gradient caching (trainers/grad_cache.py) against the one-pass gradient.

The trainer's own update step (`contrastive.make_step_functions`) is run with
an optimizer that records the gradient it is given, once in one pass and once
with `gradient_cache_microbatches`, on 8 fake devices. With a tower that has
no batch coupling and no randomness (AST tiny, no SpecAugment, no dropout) the
two must agree to 1e-5; with BatchNorm, SpecAugment and dropout (ResNet tiny)
the cached gradient must equal plain autodiff through all micro-batches at
once, written here from the documented contract (micro-batch rows and rngs).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import demo as demo_config
from configs import mulan as mulan_config
from jplaylist import losses
from jplaylist.models import two_tower
from jplaylist.trainers import contrastive
from jplaylist.trainers import grad_cache
from jplaylist.trainers import summary

BATCH = 16       # 2 rows per device on 8 devices
DEVICES = 8
TOLERANCE = 1e-5
RNG = jax.random.key(7)


def _deterministic_ast_config(kind, **loss_fields):
  """AST tiny + BERT tiny: per-example towers with no randomness."""
  config = mulan_config.get_config("audio=ast,runlocal=True")
  config.model.frontend = "ast"          # the plain log-mel preset: fixed here
  config.model.text_dropout = 0.0
  config.model.specaugment = None
  config.loss.kind = kind
  for name, value in loss_fields.items():
    config.loss[name] = value
  return config


def _batch(config, seed=0, duplicate_rows=()):
  """A random batch; rows (dst, src) in duplicate_rows copy src's text."""
  rng = np.random.default_rng(seed)
  samples = int(config.input.window_seconds * 16000)
  length = config.input.max_text_length
  ids = rng.integers(1000, 2000, (BATCH, length)).astype(np.int32)
  mask = (np.arange(length)[None] < rng.integers(3, length + 1, BATCH)[:, None])
  mask = mask.astype(np.int32)
  for dst, src in duplicate_rows:
    ids[dst], mask[dst] = ids[src], mask[src]
  return {"audio": (0.1 * rng.normal(size=(BATCH, samples))).astype(np.float32),
          "text_ids": ids, "text_mask": mask}


def _recorder():
  """An optimizer whose state is the last gradient it was given (no update)."""
  def update(grads, state, params=None):
    del state, params
    return jax.tree.map(jnp.zeros_like, grads), grads
  return optax.GradientTransformation(lambda params: jax.tree.map(jnp.zeros_like, params),
                                      update)


def _mesh():
  return jax.sharding.Mesh(np.array(jax.devices()[:DEVICES]), ("data",))


def _step(config, batch, microbatches):
  """(loss, gradients, new batch_stats, initial state) of the trainer's first step."""
  config.optimizer.gradient_cache_microbatches = microbatches
  model = two_tower.build(config)
  mesh = _mesh()
  optimizer = _recorder()
  _, update = contrastive.make_step_functions(config, model, optimizer,
                                              optax.constant_schedule(0.0), mesh)
  state = contrastive.init_train_state(model, config, optimizer, jax.random.key(0))
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  batch = {k: jax.device_put(jnp.asarray(v), split) for k, v in batch.items()}
  new_state, metrics = jax.jit(update)(state, batch, RNG)
  return (float(metrics["loss"]), jax.device_get(new_state.opt_state),
          jax.device_get(new_state.batch_stats), state)


def _assert_trees_close(actual, expected, what, tolerance=TOLERANCE):
  """Largest error within tolerance x max(1, largest expected magnitude)."""
  paths = jax.tree_util.tree_flatten_with_path(expected)[0]
  flat_actual = jax.tree_util.tree_leaves(actual)
  assert len(paths) == len(flat_actual)
  scale = max(1.0, max(float(np.max(np.abs(v))) for _, v in paths))
  for (path, want), got in zip(paths, flat_actual):
    error = float(np.max(np.abs(np.asarray(got, np.float64) - want), initial=0.0))
    assert error <= tolerance * scale, (
        f"{what} at {jax.tree_util.keystr(path)}: error {error:.2e} > "
        f"{tolerance * scale:.1e}")


def _norm(tree, prefix):
  return float(optax.tree.norm(tree[prefix]))


@pytest.mark.parametrize("kind", losses.KINDS)
def test_cached_gradient_equals_the_full_batch_gradient(kind):
  config = _deterministic_ast_config(kind)
  batch = _batch(config)
  loss, grads, _, _ = _step(config, batch, microbatches=0)
  for microbatches in (2,):
    cached_loss, cached_grads, _, _ = _step(config, batch, microbatches)
    np.testing.assert_allclose(cached_loss, loss, rtol=1e-6)
    _assert_trees_close(cached_grads, grads, f"{kind}, K={microbatches}")
  # The comparison means something: both towers and the temperature get
  # gradients well above the tolerance.
  assert _norm(grads, "audio") > 1e-3 and _norm(grads, "text") > 1e-3
  assert abs(float(grads["temperature_raw"])) > 1e-3
  if kind == "siglip":
    assert abs(float(grads["loss_bias"])) > 1e-3


def test_cached_gradient_honours_the_duplicate_text_mask_with_a_ring():
  # Duplicates within a device, across devices and across micro-batches
  # (rows 0 and 1 of a device fall in different micro-batches at K = 2);
  # the ring in chunks of one text exercises the chunked path too.
  duplicates = [(1, 0), (9, 0), (6, 3), (15, 4)]
  config = _deterministic_ast_config("clip", mask_duplicate_texts=True)
  batch = _batch(config, seed=1, duplicate_rows=duplicates)
  loss, grads, _, _ = _step(config, batch, microbatches=0)
  config.loss.implementation, config.loss.chunk_size = "ring", 1
  cached_loss, cached_grads, _, _ = _step(config, batch, microbatches=2)
  np.testing.assert_allclose(cached_loss, loss, rtol=1e-6)
  _assert_trees_close(cached_grads, grads, "masked, K=2")
  # The mask is active: without it the loss is another.
  config = _deterministic_ast_config("clip", mask_duplicate_texts=False)
  unmasked_loss, _, _, _ = _step(config, batch, microbatches=2)
  assert abs(unmasked_loss - loss) > 1e-3


def _reference_rows(microbatch, num_microbatches):
  """Batch rows of micro-batch k: m = B_local / K rows from each device."""
  local = BATCH // DEVICES
  size = local // num_microbatches
  return np.array([device * local + microbatch * size + j
                   for device in range(DEVICES) for j in range(size)])


def test_batchnorm_and_random_masks_follow_the_micro_batches():
  # ResNet tiny (BatchNorm), SpecAugment and text dropout on.
  config = demo_config.get_config("runlocal=True")
  config.loss.kind, config.loss.mask_duplicate_texts = "mulan", False
  # The demo's text distillation is not gradient-cached: the trainer refuses
  # the two together (tests/trainers/test_text_distillation.py).
  config.model.text_teacher, config.loss.text_distill_weight = False, 0.0
  num_microbatches = 2
  batch = _batch(config, seed=2)
  _, grads, batch_stats, state = _step(config, batch, num_microbatches)
  model = two_tower.build(config)
  rngs = jax.random.split(jax.random.fold_in(RNG, 0), num_microbatches)  # step 0

  def reference(params, batch, rngs):
    za, zt, new_stats = [None] * num_microbatches, [None] * num_microbatches, []
    for k in range(num_microbatches):
      rows = _reference_rows(k, num_microbatches)
      specaugment_rng, dropout_rng = jax.random.split(rngs[k])
      variables = {"params": {n: v for n, v in params.items() if n != "loss_bias"},
                   "batch_stats": state.batch_stats}
      (za[k], zt[k], _), updated = model.apply(
          variables, batch["audio"][rows], batch["text_ids"][rows],
          batch["text_mask"][rows], train=True, mutable=["batch_stats"],
          rngs={"specaugment": specaugment_rng, "dropout": dropout_rng})
      new_stats.append(updated["batch_stats"])
    temperature = two_tower.temperature_from_raw(params["temperature_raw"])
    loss, _ = losses.contrastive_loss(za=jnp.concatenate(za), zt=jnp.concatenate(zt),
                                      temperature=temperature, kind="mulan")
    mean_stats = jax.tree.map(lambda *s: sum(s) / len(s), *new_stats)
    return loss, mean_stats

  # The batch is an argument, not a closure constant XLA would fold for minutes.
  reference_grad = jax.jit(jax.grad(reference, has_aux=True))
  expected_grads, expected_stats = reference_grad(state.params, batch, rngs)
  # 1e-4, not 1e-5: BatchNorm's statistics over 8 examples x 400 frames x 64
  # mels are summed in another order here (one device) than in the step (8
  # devices), which moves the stem's gradient by a few 1e-5 in float32. Masks
  # drawn from other rngs move it much more (checked below).
  _assert_trees_close(grads, jax.device_get(expected_grads), "ResNet, K=2", 1e-4)
  _assert_trees_close(batch_stats, jax.device_get(expected_stats), "batch_stats", 1e-4)
  swapped_grads, _ = reference_grad(state.params, batch, rngs[::-1])
  with pytest.raises(AssertionError):
    _assert_trees_close(grads, jax.device_get(swapped_grads), "swapped rngs", 1e-3)
  assert _norm(grads, "audio") > 1e-3


def test_micro_batch_layout_round_trips_and_keeps_rows_on_their_device():
  batch = np.arange(BATCH * 3).reshape(BATCH, 3)
  micro = np.asarray(grad_cache.to_microbatches(jnp.asarray(batch), 2, DEVICES))
  for k in range(2):
    np.testing.assert_array_equal(micro[k], batch[_reference_rows(k, 2)])
  back = grad_cache.from_microbatches(jnp.asarray(micro), DEVICES)
  np.testing.assert_array_equal(back, batch)


def test_configuration_errors():
  config = _deterministic_ast_config("clip")
  config.optimizer.accumulation_steps = 2
  config.optimizer.gradient_cache_microbatches = 2
  with pytest.raises(ValueError, match="choose one"):
    contrastive.make_step_functions(config, two_tower.build(config), _recorder(),
                                    optax.constant_schedule(0.0), _mesh())
  with pytest.raises(ValueError, match="gradient_cache_microbatches"):
    grad_cache.to_microbatches(jnp.zeros((BATCH, 2)), 3, DEVICES)
  for implementation, chunk_size, message in [("chunked", 0, "needs config.loss.chunk_size"),
                                              ("gather", 4, "not 'gather'"),
                                              ("allreduce", 0, "known: plain")]:
    config.loss.implementation, config.loss.chunk_size = implementation, chunk_size
    with pytest.raises(ValueError, match=message):
      contrastive.make_loss(config, _mesh())


def test_loss_implementations_from_the_config_agree():
  config = _deterministic_ast_config("mulan")
  mesh = _mesh()
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  rng = np.random.default_rng(3)
  za, zt = (rng.normal(size=(BATCH, 8)) for _ in range(2))
  za, zt = (jax.device_put(jnp.float32(z / np.linalg.norm(z, axis=1, keepdims=True)),
                           split) for z in (za, zt))
  values = {}
  for implementation, chunk_size in [("plain", 0), ("chunked", 3), ("gather", 0),
                                     ("ring", 0), ("ring", 1)]:
    config.loss.implementation, config.loss.chunk_size = implementation, chunk_size
    loss_fn = contrastive.make_loss(config, mesh)
    grad_fn = jax.jit(jax.value_and_grad(lambda a, t, f=loss_fn: f(a, t, 0.1, None)[0],
                                         argnums=(0, 1)))
    values[(implementation, chunk_size)] = jax.device_get(grad_fn(za, zt))
  expected = values[("plain", 0)]
  for variant, value in values.items():
    _assert_trees_close(value, expected, str(variant))


def test_a_run_with_gradient_caching_trains_like_the_plain_run(tiny_demo, tmp_path):
  losses_by_run = {}
  for microbatches in (0, 2):
    config = _deterministic_ast_config("mulan")
    config.input.data_dir = tiny_demo[2]
    config.mesh = (("data", 2),)     # 4 rows per device: 2 micro-batches of 2
    config.eval_every = 0
    config.num_train_steps = 2
    config.optimizer.gradient_cache_microbatches = microbatches
    workdir = tmp_path / f"k{microbatches}"
    contrastive.train_and_evaluate(config, str(workdir))
    rows = summary.read_metrics(str(workdir))
    assert [r["step"] for r in rows] == [1, 2]
    losses_by_run[microbatches] = [r["loss"] for r in rows]
  plain, cached = losses_by_run[0], losses_by_run[2]
  np.testing.assert_allclose(cached[0], plain[0], rtol=1e-6)
  # Adam's first step is about lr * sign(g): gradients that agree to 1e-5
  # give the same second step up to the odd sign of a near-zero component.
  np.testing.assert_allclose(cached[1], plain[1], rtol=1e-4)
  assert plain[1] != plain[0]
