"""The text tower's frozen teacher and the similarity-distillation loss."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jplaylist import losses
from jplaylist.models import bert


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_similarity_distillation_equals_a_loop_over_pairs():
  rng = np.random.default_rng(0)
  student = _unit(rng.normal(size=(7, 5)))
  teacher = _unit(rng.normal(size=(7, 11)))
  pairs = [(i, j) for i, j in itertools.product(range(7), repeat=2) if i != j]
  expected = np.mean([(student[i] @ student[j] - teacher[i] @ teacher[j]) ** 2
                      for i, j in pairs])
  got = losses.similarity_distillation(jnp.asarray(student), jnp.asarray(teacher))
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)
  # Its gradient reaches the student only.
  grad_student, grad_teacher = jax.grad(losses.similarity_distillation, argnums=(0, 1))(
      jnp.asarray(student), jnp.asarray(teacher))
  assert np.abs(np.asarray(grad_student)).max() > 0
  assert np.abs(np.asarray(grad_teacher)).max() == 0
  # The same geometry in another basis costs nothing; one text alone too.
  rotation = np.linalg.qr(rng.normal(size=(5, 5)))[0]
  assert float(losses.similarity_distillation(jnp.asarray(student @ rotation),
                                              jnp.asarray(student))) < 1e-10
  assert float(losses.similarity_distillation(jnp.ones((1, 3)), jnp.ones((1, 4)))) == 0.0


def _tokens(rng, batch=4, length=9):
  ids = rng.integers(1000, 2000, size=(batch, length)).astype(np.int32)
  ids[:, 0] = 101
  mask = np.ones((batch, length), np.int32)
  mask[1, 5:] = 0
  mask[3, 2:] = 0
  return jnp.asarray(ids), jnp.asarray(mask)


def _sow(model, variables, ids, mask):
  z, state = model.apply(variables, ids, mask, mutable=["intermediates"])
  return z, np.asarray(state["intermediates"]["teacher_embedding"][0])


def test_teacher_is_the_starting_encoder_mean_pooled_whatever_training_does():
  ids, mask = _tokens(np.random.default_rng(1))
  model = bert.Model(variant="tiny", embed_dim=8, train_layers=1, pooling="cls",
                     dropout_rate=0.0, teacher=True)
  variables = model.init(jax.random.key(0), ids, mask)
  params = bert.copy_to_teacher(variables["params"])
  layers = bert.decode_variant("tiny")["num_layers"]
  assert sorted(params["teacher"]) == [f"layer_{layers - 1}"]

  # Reference: the plain encoder with the same weights, mean-pooled over real tokens.
  encoder = bert.BertEncoder(**bert.decode_variant("tiny"), dropout_rate=0.0,
                             attention_dropout_rate=0.0)
  sequence, _ = encoder.apply({"params": params["encoder"]}, ids, mask)
  m = np.asarray(mask, np.float32)[..., None]
  expected = _unit((np.asarray(sequence) * m).sum(1) / m.sum(1))

  z, taught = _sow(model, {"params": params}, ids, mask)
  np.testing.assert_allclose(taught, expected, atol=1e-5)
  # Without the collection mutable (inference) the output is the same and
  # nothing is sown.
  plain = model.apply({"params": params}, ids, mask)
  np.testing.assert_allclose(np.asarray(plain), np.asarray(z), atol=1e-6)

  # Training moves the encoder's top layer: the teacher stays where it started.
  moved = jax.tree_util.tree_map(lambda x: x + 0.05, params["encoder"][f"layer_{layers - 1}"])
  trained = dict(params, encoder=dict(params["encoder"], **{f"layer_{layers - 1}": moved}))
  z_trained, taught_after = _sow(model, {"params": trained}, ids, mask)
  np.testing.assert_allclose(taught_after, expected, atol=1e-5)
  assert np.abs(np.asarray(z_trained) - np.asarray(z)).max() > 1e-3

  # Before copy_to_teacher the copy is another random init: the copy matters.
  _, untaught = _sow(model, variables, ids, mask)
  assert np.abs(untaught - expected).max() > 1e-3


def test_teacher_needs_a_frozen_boundary_and_is_frozen():
  ids, mask = _tokens(np.random.default_rng(2))
  with pytest.raises(ValueError, match="frozen boundary"):
    bert.Model(variant="tiny", embed_dim=8, teacher=True).init(jax.random.key(0), ids, mask)
  patterns = bert.frozen_patterns("tiny", train_layers=1, prefix="text/", teacher=True)
  assert "^text/teacher/" in patterns
  assert "^text/teacher/" in bert.frozen_patterns("tiny", train_encoder=False,
                                                  prefix="text/", teacher=True)
  assert not any("teacher" in p for p in bert.frozen_patterns("tiny", train_layers=1))
  # A tower with no teacher comes back as given.
  plain = bert.Model(variant="tiny", embed_dim=8, train_layers=1).init(
      jax.random.key(0), ids, mask)["params"]
  assert bert.copy_to_teacher(plain) is plain
