"""Networks of user-anchored metric learning: shapes, what each user network
reads, the audio branch's centring of its pooled features, and the cosine."""

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
  variables = jax.jit(branch.init)(jax.random.key(0), users, audio)
  u, a = jax.jit(branch.apply)(variables, users, audio)
  assert u.shape == (4, 40) and a.shape == (2, 40)
  np.testing.assert_allclose(u[0], u[1])
  assert not np.allclose(u[0], u[3])
  # A masked history slot changes nothing: user 2 is the mean of track 1 alone.
  lone = _users([2], [[1, 1]], [[1, 1]], [[1, 0]])
  np.testing.assert_allclose(branch.apply(variables, lone,
                                          method=model_lib.Model.embed_users)[0], u[2],
                             rtol=0, atol=1e-6)
  lookup = _model("lookup")
  variables = jax.jit(lookup.init)(jax.random.key(0), users, audio)
  u = lookup.apply(variables, users, method=model_lib.Model.embed_users)
  assert not np.allclose(u[0], u[1])
  np.testing.assert_allclose(u[2], u[3])


def test_the_audio_branch_centres_its_pooled_features_on_the_batch():
  model = model_lib.Model(user="branch", num_tracks=5, embed_dim=40, track_dim=4,
                          user_hidden=(8,), window_seconds=0.5, num_mels=32,
                          channels=(4, 4, 8, 8, 8))
  users = _users([0], [[1]], [[1]], [[1, 0]])
  rng = np.random.default_rng(0)
  # Noise of very different loudness: the pooled features differ.
  audio = jnp.asarray((rng.standard_normal((6, 8000)) * np.geomspace(30, 3000, 6)[:, None])
                      .astype(np.int16))
  variables = model.init(jax.random.key(0), users, audio)
  assert set(variables) == {"params", "batch_stats"}

  def centred(variables, train):
    _, state = model.apply(variables, audio, train, method=model_lib.Model.embed_audio,
                           capture_intermediates=lambda m, _: m.name == "pool_norm",
                           mutable=["intermediates", "batch_stats"])
    return (np.asarray(state["intermediates"]["audio_net"]["pool_norm"]["__call__"][0]),
            state["batch_stats"])

  # Training: the batch's mean is taken off, and the running mean moves a
  # tenth of the way to it (from zero).
  out, stats = centred(variables, True)
  np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)
  batch_mean = np.asarray(stats["audio_net"]["pool_norm"]["mean"]) / 0.1
  assert np.abs(batch_mean).max() > 0.1
  # Evaluation: the running mean is taken off, and the statistics stay.
  trained = {"params": variables["params"], "batch_stats": stats}
  out_eval, kept = centred(trained, False)
  np.testing.assert_allclose(out_eval, out + 0.9 * batch_mean, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(kept["audio_net"]["pool_norm"]["mean"],
                                stats["audio_net"]["pool_norm"]["mean"])
  # Centred, the windows' embeddings no longer point one way.
  z = np.asarray(model.apply(variables, audio, True, method=model_lib.Model.embed_audio,
                             mutable=["batch_stats"])[0])
  unit = z / np.linalg.norm(z, axis=1, keepdims=True)
  assert np.mean((unit @ unit.T)[~np.eye(6, dtype=bool)]) < 0.5


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
