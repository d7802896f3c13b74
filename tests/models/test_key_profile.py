"""Learned key profiles: transposition invariance, Krumhansl-Kessler start, gradients."""

import jax
import jax.numpy as jnp
import numpy as np

from jplaylist.models import key_profile


def _profiles(rng, batch=4):
  x = rng.uniform(size=(batch, 12)).astype(np.float32)
  return x / x.sum(1, keepdims=True)


def test_rotations_match_numpy_roll():
  x = np.arange(12.0)
  expected = np.stack([np.roll(x, -r) for r in range(12)])
  np.testing.assert_array_equal(key_profile.rotations(jnp.asarray(x)), expected)


def test_scores_do_not_change_when_the_music_is_transposed():
  rng = np.random.default_rng(0)
  x = _profiles(rng)
  model = key_profile.KeyProfiles(num_profiles=8)
  variables = model.init(jax.random.key(0), x)
  out = model.apply(variables, x)
  for shift in (1, 5, 11):
    np.testing.assert_allclose(model.apply(variables, np.roll(x, shift, axis=1)), out,
                               atol=1e-5)
  # ... but they do see more than the set of pitch classes' sizes.
  assert not np.allclose(model.apply(variables, x[:, ::-1]), out, atol=1e-3)


def test_the_first_two_profiles_start_at_krumhansl_kessler():
  model = key_profile.KeyProfiles(num_profiles=4)
  variables = model.init(jax.random.key(1), np.full((1, 12), 1 / 12, np.float32))
  profiles = np.asarray(variables["params"]["profiles"])
  for column, reference in ((0, key_profile.KK_MAJOR), (1, key_profile.KK_MINOR)):
    assert np.corrcoef(profiles[:, column], reference)[0, 1] > 0.999


def test_major_and_minor_key_profiles_are_told_apart_at_initialisation():
  # A pitch-class distribution shaped like A minor's rating (tonic at A = 9)
  # and one like D major's (tonic 2): the minor profile fits the first best,
  # the major profile the second, whatever the key.
  model = key_profile.KeyProfiles(num_profiles=2)
  minor = np.roll(key_profile.KK_MINOR, 9) / key_profile.KK_MINOR.sum()
  major = np.roll(key_profile.KK_MAJOR, 2) / key_profile.KK_MAJOR.sum()
  x = np.stack([minor, major]).astype(np.float32)
  variables = model.init(jax.random.key(0), x)
  out = np.asarray(model.apply(variables, x))
  # LayerNorm over two features: the larger score is +1, the other -1.
  assert out[0, 1] > out[0, 0] and out[1, 0] > out[1, 1]


def test_gradients_reach_the_profiles():
  x = _profiles(np.random.default_rng(2))
  model = key_profile.KeyProfiles(num_profiles=6)
  variables = model.init(jax.random.key(0), x)
  target = jnp.arange(6.0)

  def loss(params):
    return jnp.sum((model.apply({"params": params}, x) - target) ** 2)
  grads = jax.grad(loss)(variables["params"])
  assert np.all(np.isfinite(grads["profiles"])) and np.abs(grads["profiles"]).sum() > 0
