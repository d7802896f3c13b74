"""Networks of user-anchored metric learning: shapes, what each user network
reads, the cosine, and `load`'s strictness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jplaylist.models import user_anchored as model_lib


def _users(user, history, mask, demographics):
  return {"user": jnp.asarray(user, jnp.int32), "history": jnp.asarray(history, jnp.int32),
          "history_mask": jnp.asarray(mask, bool),
          "demographics": jnp.asarray(demographics, jnp.float32)}


def _model(user):
  return model_lib.Model(user=user, num_tracks=5, num_users=3, embed_dim=40, track_dim=4,
                         user_hidden=(8,), window_seconds=0.1, num_mels=128,
                         channels=(2, 2, 2, 2, 2))


def test_the_branch_reads_history_and_demographics_and_the_lookup_the_user_id():
  # Users 0 and 1 share history and demographics; user 2 differs in a masked-out slot only.
  users = _users([0, 1, 2, 2], [[1, 2], [1, 2], [1, 4], [3, 3]],
                 [[1, 1], [1, 1], [1, 0], [1, 1]], [[1, 0]] * 4)
  audio = jnp.zeros((2, 1600), jnp.int16)
  branch = _model("branch")
  params = jax.jit(branch.init)(jax.random.key(0), users, audio)["params"]
  u, a = jax.jit(branch.apply)({"params": params}, users, audio)
  assert u.shape == (4, 40) and a.shape == (2, 40)
  np.testing.assert_allclose(u[0], u[1])
  assert not np.allclose(u[0], u[3])
  # A masked history slot changes nothing: user 2 is the mean of track 1 alone.
  lone = _users([2], [[1, 1]], [[1, 1]], [[1, 0]])
  np.testing.assert_allclose(branch.apply({"params": params}, lone,
                                          method=model_lib.Model.embed_users)[0], u[2],
                             rtol=0, atol=1e-6)
  lookup = _model("lookup")
  params = jax.jit(lookup.init)(jax.random.key(0), users, audio)["params"]
  u = lookup.apply({"params": params}, users, method=model_lib.Model.embed_users)
  assert not np.allclose(u[0], u[1])
  np.testing.assert_allclose(u[2], u[3])


def test_cosine_equals_numpy():
  rng = np.random.default_rng(0)
  x, y = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
  expected = np.sum(x * y, 1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
  np.testing.assert_allclose(model_lib.cosine(jnp.asarray(x), jnp.asarray(y)), expected,
                             rtol=1e-5)


def test_an_unknown_user_network_is_refused():
  with pytest.raises(ValueError, match="user='graph'"):
    model_lib.Model(user="graph").init(jax.random.key(0), _users([0], [[0]], [[1]], [[1.0]]),
                                       jnp.zeros((1, 1600), jnp.int16))
