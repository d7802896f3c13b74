"""The trainer's text similarity-distillation term (loss.text_distill_weight).

The trainer's own update step runs on 8 fake devices with an optimizer that
records its gradient (as in test_grad_cache.py), with the term off and on:
the loss must grow by exactly weight x the logged distillation, that value
must equal `losses.similarity_distillation` of the tower's own outputs, the
audio tower's gradient must not change, and the teacher must get none.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jplaylist import losses
from jplaylist.models import two_tower
from jplaylist.trainers import contrastive
from tests.trainers import test_grad_cache as helpers

WEIGHT = 3.0


def _config(weight):
  config = helpers._deterministic_ast_config("clip")
  config.model.train_text_layers = 1
  config.model.text_teacher = True
  config.loss.text_distill_weight = weight
  return config


def _step(config, batch):
  model = two_tower.build(config)
  mesh = helpers._mesh()
  optimizer = helpers._recorder()
  _, update = contrastive.make_step_functions(config, model, optimizer,
                                              optax.constant_schedule(0.0), mesh)
  state = contrastive.init_train_state(model, config, optimizer, jax.random.key(0))
  # As a run starts: the teacher is the encoder it starts from.
  state = state.replace(params=contrastive.warm_start(state.params, config, log=lambda _: None))
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  sharded = {k: jax.device_put(jnp.asarray(v), split) for k, v in batch.items()}
  new_state, metrics = jax.jit(update)(state, sharded, helpers.RNG)
  return model, state, jax.device_get(new_state.opt_state), jax.device_get(metrics)


def test_distillation_adds_its_weighted_term_and_trains_only_the_text_tower():
  batch = helpers._batch(_config(0.0), duplicate_rows=((3, 1),))
  _, _, grads_off, metrics_off = _step(_config(0.0), batch)
  model, state, grads_on, metrics_on = _step(_config(WEIGHT), batch)
  assert "text_distillation" not in metrics_off

  # The term as the tower's outputs give it, computed outside the trainer.
  params = jax.device_get(state.params)
  zt, sown = model.apply({"params": params}, jnp.asarray(batch["text_ids"]),
                         jnp.asarray(batch["text_mask"]), method=model.embed_text,
                         mutable=["intermediates"])
  teacher = sown["intermediates"]["text"]["teacher_embedding"][0]
  expected = float(losses.similarity_distillation(zt, teacher))
  assert expected > 1e-4
  np.testing.assert_allclose(float(metrics_on["text_distillation"]), expected, rtol=1e-4)
  np.testing.assert_allclose(float(metrics_on["contrastive_loss"]),
                             float(metrics_off["loss"]), rtol=1e-6)
  np.testing.assert_allclose(float(metrics_on["loss"]),
                             float(metrics_off["loss"]) + WEIGHT * expected, rtol=1e-5)

  helpers._assert_trees_close(grads_on["audio"], grads_off["audio"], "audio gradient")
  assert float(optax.tree.norm(grads_on["text"]["teacher"])) == 0.0
  difference = jax.tree.map(lambda a, b: a - b, grads_on["text"]["projection"],
                            grads_off["text"]["projection"])
  assert float(optax.tree.norm(difference)) > 1e-6


def test_distillation_needs_a_teacher_and_is_not_gradient_cached():
  config = _config(WEIGHT)
  config.model.text_teacher = False
  with pytest.raises(ValueError, match="text_teacher"):
    contrastive.make_step_functions(config, two_tower.build(config), optax.sgd(0.1),
                                    optax.constant_schedule(0.0), helpers._mesh())
  config = _config(WEIGHT)
  config.optimizer.gradient_cache_microbatches = 2
  with pytest.raises(ValueError, match="gradient_cache_microbatches"):
    contrastive.make_step_functions(config, two_tower.build(config), optax.sgd(0.1),
                                    optax.constant_schedule(0.0), helpers._mesh())
