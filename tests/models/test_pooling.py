"""Masked temporal pooling against numpy, and the frame-validity rule against the frontend.

References are independent of `jplaylist.models.pooling`: weighted means
written with numpy loops, frame validity recomputed sample by sample from the
frontend's window, hop and FFT size, and the log-mel frontend itself (a frame
called valid must not change when the padding changes).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jplaylist.audio import frontend as frontend_lib
from jplaylist.models import pooling
from jplaylist.models import resnet

FRAMES, MELS = 400, 64


def _numpy_pool(features, weights, mode):
  """features [B, T, F, C], weights [B, T] -> numpy float64 reference."""
  features = np.asarray(features, np.float64)
  over_time = features.mean(axis=2)                          # [B, T, C]
  out = []
  for b in range(features.shape[0]):
    w = np.asarray(weights[b], np.float64)
    mean = (w[:, None] * over_time[b]).sum(0) / w.sum()
    if mode == "mean":
      out.append(mean)
    elif mode == "mean_std":
      variance = (w[:, None] * (over_time[b] - mean) ** 2).sum(0) / w.sum()
      out.append(np.concatenate([mean, np.sqrt(variance + 1e-6)]))
    else:
      out.append(np.concatenate([mean, over_time[b][w > 0].max(axis=0)]))
  return np.stack(out)


@pytest.mark.parametrize("mode", pooling.POOLINGS)
def test_temporal_pool_is_a_weighted_mean_over_valid_steps(mode):
  rng = np.random.default_rng(0)
  features = rng.normal(size=(3, 7, 4, 5)).astype(np.float32)
  weights = rng.uniform(0.1, 1.0, size=(3, 7)).astype(np.float32)
  weights[0, 4:] = 0.0   # a short clip: the last three steps are padding
  weights[1, 6] = 0.0
  pooled = np.asarray(pooling.temporal_pool(jnp.asarray(features), jnp.asarray(weights),
                                            mode))
  np.testing.assert_allclose(pooled, _numpy_pool(features, weights, mode),
                             rtol=1e-5, atol=1e-6)
  # Features at zero-weight steps do not enter the pool at all.
  noisy = features.copy()
  noisy[0, 4:] = 1e3 * rng.normal(size=noisy[0, 4:].shape)
  noisy[1, 6] = -1e3
  pooled_noisy = np.asarray(pooling.temporal_pool(jnp.asarray(noisy),
                                                  jnp.asarray(weights), mode))
  np.testing.assert_allclose(pooled_noisy, pooled, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", pooling.POOLINGS)
def test_temporal_pool_uniform_weights_equal_the_plain_mean(mode):
  features = np.random.default_rng(1).normal(size=(2, 5, 3, 4)).astype(np.float32)
  plain = np.asarray(pooling.temporal_pool(jnp.asarray(features), None, mode))
  ones = np.asarray(pooling.temporal_pool(jnp.asarray(features), jnp.ones((2, 5)), mode))
  np.testing.assert_allclose(plain, _numpy_pool(features, np.ones((2, 5)), mode),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ones, plain, rtol=1e-6, atol=1e-6)
  if mode == "mean":
    np.testing.assert_allclose(plain, features.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_block_weights_are_valid_fractions_per_block():
  valid = np.zeros((2, 10), bool)
  valid[0, :7] = True      # blocks of 4: [4/4, 3/4, 0/2]
  weights = np.asarray(pooling.block_weights(jnp.asarray(valid), 3, 4))
  np.testing.assert_allclose(weights[0], [1.0, 0.75, 0.0])
  np.testing.assert_allclose(weights[1], [1.0, 1.0, 1.0])  # nothing valid: plain mean
  with pytest.raises(ValueError, match="give 3 blocks, not 4"):
    pooling.block_weights(jnp.asarray(valid), 4, 4)


def _frame_valid_reference(config, num_samples, num_valid):
  """Frame validity from the frontend's definition, sample by sample.

  Native STFT frame t (centre padding n_fft // 2) reads padded-signal samples
  [t * hop, t * hop + n_fft); of those, the Hann window is non-zero on the
  window_length samples centred in the FFT frame. A native frame is valid
  when all of those that fall inside the waveform are real; an output frame
  is valid when every native frame overlapping its time span is.
  """
  pad = config.n_fft // 2 if config.center else 0
  left = (config.n_fft - config.window_length) // 2
  native = (1 + num_samples // config.hop_length if config.center
            else 1 + (num_samples - config.n_fft) // config.hop_length)
  native_valid = []
  for t in range(native):
    samples = [t * config.hop_length + left + k - pad for k in range(config.window_length)]
    samples = [s for s in samples if 0 <= s < num_samples]
    native_valid.append(all(s < num_valid for s in samples))
  native_valid = np.array(native_valid)
  if config.num_frames is None:
    return native_valid
  ratio = native / config.num_frames
  out = []
  for j in range(config.num_frames):
    first, last = int(np.floor(j * ratio)), int(np.ceil((j + 1) * ratio)) - 1
    out.append(native_valid[first:min(last, native - 1) + 1].all())
  return np.array(out)


@pytest.mark.parametrize("preset,seconds", [("resnet", 3.125), ("resnet", 7.0),
                                             ("musicnn96", 1.3)])
def test_frame_mask_counts_match_the_frontend_framing(preset, seconds):
  config = frontend_lib.decode(preset)
  num_samples = int(round(config.window_seconds * config.sample_rate))
  num_valid = int(round(seconds * config.sample_rate))
  audio_mask = np.arange(num_samples)[None, :] < num_valid
  mask = np.asarray(pooling.frame_mask(jnp.asarray(audio_mask), preset))[0]
  expected = _frame_valid_reference(config, num_samples, num_valid)
  np.testing.assert_array_equal(mask, expected)
  # Valid frames are a prefix: the clip is padded at its end.
  assert mask[:mask.sum()].all() and not mask[mask.sum():].any()
  if preset == "resnet" and seconds == 3.125:
    # 50,000 real samples: native frames t with 160 t + 200 <= 50,000 are
    # clean, t = 0..311 (312 frames); output frame j spans native frames
    # [2.5025 j, 2.5025 (j + 1)), clean while 2.5025 (j + 1) <= 312: j <= 123.
    assert mask.sum() == 124


def _padded_twice(num_samples, num_valid, *, seed):
  """A random clip of num_valid samples in a [1, num_samples] window, padded
  once with zeros and once with noise (seeded)."""
  rng = np.random.default_rng(seed)
  clip = rng.normal(size=num_valid).astype(np.float32)
  zeros = np.zeros((1, num_samples), np.float32)
  zeros[0, :num_valid] = clip
  noisy = rng.normal(size=(1, num_samples)).astype(np.float32)
  noisy[0, :num_valid] = clip
  return zeros, noisy


@pytest.mark.parametrize("preset", ["resnet", "musicnn96"])
def test_valid_frames_do_not_depend_on_the_padding(preset):
  # The rule's point: what the padding holds cannot reach a valid frame, and
  # the first invalid frame is already touched by it (the rule is tight).
  config = frontend_lib.decode(preset)
  num_samples = int(round(config.window_seconds * config.sample_rate))
  num_valid = int(0.4 * num_samples) + 37
  zeros, noisy = _padded_twice(num_samples, num_valid, seed=2)
  audio_mask = np.arange(num_samples)[None, :] < num_valid
  mask = np.asarray(pooling.frame_mask(jnp.asarray(audio_mask), config))[0]
  log_zeros = np.asarray(frontend_lib.log_mel(jnp.asarray(zeros), config))[0]
  log_noisy = np.asarray(frontend_lib.log_mel(jnp.asarray(noisy), config))[0]
  assert 0 < mask.sum() < len(mask)
  np.testing.assert_allclose(log_noisy[mask], log_zeros[mask], atol=1e-3)
  first_invalid = int(mask.sum())
  assert np.abs(log_noisy[first_invalid] - log_zeros[first_invalid]).max() > 1.0


def _resnet(pooling_mode="mean"):
  model = resnet.Model("tiny", pooling=pooling_mode)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((2, FRAMES, MELS)))
  return model, variables


@pytest.mark.parametrize("pooling_mode", pooling.POOLINGS)
def test_resnet_full_mask_equals_the_unmasked_model(pooling_mode):
  model, variables = _resnet(pooling_mode)
  log_mel = jnp.asarray(np.random.default_rng(3).normal(size=(2, FRAMES, MELS)),
                        jnp.float32)
  plain = np.asarray(model.apply(variables, log_mel))
  full = np.asarray(model.apply(variables, log_mel,
                                frame_mask=jnp.ones((2, FRAMES), bool)))
  np.testing.assert_allclose(full, plain, atol=1e-6)


def test_resnet_masked_embedding_matches_numpy_pool_of_its_trunk():
  model, variables = _resnet("mean")
  rng = np.random.default_rng(4)
  log_mel = jnp.asarray(rng.normal(size=(2, FRAMES, MELS)), jnp.float32)
  valid = np.arange(FRAMES)[None, :] < np.array([[124], [FRAMES]])
  z, state = model.apply(variables, log_mel, frame_mask=jnp.asarray(valid),
                         capture_intermediates=True, mutable=["intermediates"])
  trunk = np.asarray(state["intermediates"]["trunk"]["__call__"][0], np.float64)
  steps = trunk.shape[1]
  assert steps == -(-FRAMES // resnet.TIME_STRIDE)
  # Weight of step k: fraction of its 16 frames that are valid.
  weights = np.array([[valid[b, k * 16:(k + 1) * 16].mean() for k in range(steps)]
                      for b in range(2)])
  pooled = _numpy_pool(trunk, weights, "mean")
  kernel = np.asarray(variables["params"]["projection"]["kernel"], np.float64)
  bias = np.asarray(variables["params"]["projection"]["bias"], np.float64)
  projected = pooled @ kernel + bias
  expected = projected / np.linalg.norm(projected, axis=-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(z), expected, atol=1e-5)
  # The short clip's embedding is not the plain mean's.
  plain = np.asarray(model.apply(variables, log_mel))
  assert np.abs(plain[0] - np.asarray(z)[0]).max() > 1e-3
  np.testing.assert_allclose(np.asarray(z)[1], plain[1], atol=1e-6)


def test_errors():
  with pytest.raises(ValueError, match="known: mean, mean_std, mean_max"):
    pooling.temporal_pool(jnp.zeros((1, 2, 2, 2)), None, "max")
  with pytest.raises(ValueError, match=r"\[B, samples\]"):
    pooling.frame_mask(jnp.ones((16000,), bool), "resnet")
  model, variables = _resnet()
  with pytest.raises(ValueError, match="does not match"):
    model.apply(variables, jnp.zeros((2, FRAMES, MELS)),
                frame_mask=jnp.ones((2, FRAMES - 1), bool))


def test_resnet_embedding_ignores_what_the_padding_holds_given_the_mask():
  # A 3.125-s clip in a 10-s window, padded once with zeros and once with
  # noise: with the frame mask the two embeddings agree; without it they do not.
  config = frontend_lib.decode("resnet")
  num_samples, num_valid = 160_000, 50_000
  zeros, noisy = _padded_twice(num_samples, num_valid, seed=5)
  mask = pooling.frame_mask(jnp.asarray(np.arange(num_samples)[None] < num_valid), config)
  model, variables = _resnet("mean")
  embed = lambda audio, **kw: np.asarray(model.apply(
      variables, frontend_lib.log_mel(jnp.asarray(audio), config), **kw))
  np.testing.assert_allclose(embed(noisy, frame_mask=mask), embed(zeros, frame_mask=mask),
                             atol=1e-5)
  assert np.abs(embed(noisy) - embed(zeros)).max() > 1e-2
