"""The harness itself: what every other test relies on."""

import jax


def test_eight_fake_cpu_devices():
  assert jax.device_count() == 8
  assert all(d.platform == "cpu" for d in jax.devices())


def test_persistent_compilation_cache_is_on():
  assert jax.config.jax_compilation_cache_dir.endswith("jax_compilation")
