"""Learned key profiles: transposition-invariant features of a pitch-class profile.

The Krumhansl-Schmuckler key finder correlates a recording's pitch-class
distribution with a major and a minor key profile at each of the 12
transpositions and takes the best. `KeyProfiles` learns `num_profiles` such
profiles: each is correlated with the (centred) pitch-class profile at every
rotation, and the best score over rotations is kept, so the features do not
change when the music is transposed, which is exactly what mode (major,
minor) needs and what a convolution over log-mel bands cannot give. Two of
the profiles start at Krumhansl & Kessler's major and minor probe-tone
ratings, the rest at small random values.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def rotations(x: jax.Array) -> jax.Array:
  """[..., 12] -> [..., 12 rotations, 12]: row r is x rolled left by r."""
  index = (np.arange(12)[:, None] + np.arange(12)[None, :]) % 12
  return x[..., index]


def _init_profiles(rng: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  profiles = 0.1 * jax.random.normal(rng, shape, dtype)
  known = np.stack([KK_MAJOR, KK_MINOR], axis=1)
  known = (known - known.mean(0)) / known.std(0)
  count = min(shape[1], 2)
  return profiles.at[:, :count].set(jnp.asarray(known[:, :count], dtype))


class KeyProfiles(nn.Module):
  """[B, 12] pitch-class profiles -> [B, num_profiles] best-rotation scores.

  Each score is the correlation (centred, unit-variance pitch-class profile
  against a centred profile) at the best of the 12 transpositions, then
  layer-normalised across profiles so its scale matches the trunk features
  it is concatenated with.
  """

  num_profiles: int = 16

  @nn.compact
  def __call__(self, pitch_classes: jax.Array) -> jax.Array:
    x = pitch_classes.astype(jnp.float32)
    x = x - x.mean(-1, keepdims=True)
    x = x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-8)
    profiles = self.param("profiles", _init_profiles, (12, self.num_profiles))
    profiles = profiles - profiles.mean(0, keepdims=True)
    profiles = profiles * jax.lax.rsqrt(jnp.mean(profiles * profiles, 0, keepdims=True) + 1e-8)
    # scores[b, r, k] = <x rolled by r, profile k> / 12: a correlation in [-1, 1].
    scores = jnp.einsum("brc,ck->brk", rotations(x), profiles) / 12.0
    best = jnp.max(scores, axis=1)
    return nn.LayerNorm(name="norm")(best)
