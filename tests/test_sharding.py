"""Meshes and parameter sharding rules."""

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, PartitionSpec as P

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


def test_make_mesh_is_jax_make_mesh_with_auto_axes(monkeypatch):
  calls = []
  real = jax.make_mesh

  def spy(*args, **kwargs):
    calls.append((args, kwargs))
    return real(*args, **kwargs)
  monkeypatch.setattr(jax, "make_mesh", spy)
  mesh = sharding.make_mesh((("data", -1), ("model", 2)))
  assert len(calls) == 1 and calls[0][0] == ((4, 2), ("data", "model"))
  # Auto axes: jit partitions as before (jax.make_mesh's default is Explicit).
  assert mesh.axis_types == (AxisType.Auto, AxisType.Auto)
  assert [d.id for d in mesh.devices.flat] == [d.id for d in jax.devices()]
  # Given devices are used in their order, the first prod(sizes) of them.
  reverse = jax.devices()[::-1]
  subset = sharding.make_mesh((("data", 2), ("model", 2)), devices=reverse)
  assert subset.devices.tolist() == [[reverse[0], reverse[1]], [reverse[2], reverse[3]]]
  x = jax.device_put(np.arange(8.0), jax.sharding.NamedSharding(mesh, P("data")))
  assert float(jax.jit(lambda v: (v * 2).sum())(x)) == 56.0


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
