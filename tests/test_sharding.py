"""Meshes and parameter sharding rules."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jplaylist import sharding


def test_make_mesh_sizes_and_subsets():
  mesh = sharding.make_mesh((("data", -1),))
  assert mesh.shape == {"data": 8}
  two_d = sharding.make_mesh((("data", 4), ("model", 2)))
  assert two_d.shape == {"data": 4, "model": 2}
  subset = sharding.make_mesh((("data", 2),))
  assert subset.devices.size == 2 and list(subset.devices.flat) == jax.devices()[:2]
  with pytest.raises(ValueError, match="does not fit"):
    sharding.make_mesh((("data", 3), ("model", -1)))
  with pytest.raises(ValueError, match="does not fit 8 devices"):
    sharding.make_mesh((("data", 16),))


def test_param_rules_first_match_wins_and_default_is_replicated():
  params = {"text": {"encoder": {"layer_0": {"intermediate": {"dense": {
      "kernel": np.zeros((4, 8)), "bias": np.zeros(8)}}}}},
      "audio": {"projection": {"kernel": np.zeros((8, 4))}}}
  rules = (("intermediate/dense/kernel", (None, "model")), ("kernel", ("model",)))
  specs = sharding.param_specs(params, rules)
  assert specs["text"]["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"] == P(None, "model")
  assert specs["text"]["encoder"]["layer_0"]["intermediate"]["dense"]["bias"] == P()
  assert specs["audio"]["projection"]["kernel"] == P("model")
  with pytest.raises(ValueError, match="shape"):
    sharding.param_specs({"bias": np.zeros(3)}, (("bias", (None, "model")),))


def test_host_batch_becomes_a_global_array_split_over_data():
  mesh = sharding.make_mesh((("data", 4), ("model", 2)))
  batch = {"audio": np.arange(16, dtype=np.float32).reshape(8, 2)}
  out = sharding.host_batch_to_global(batch, mesh)
  np.testing.assert_array_equal(np.asarray(out["audio"]), batch["audio"])
  assert out["audio"].sharding.spec == P("data")
  assert len(out["audio"].addressable_shards) == 8
