"""Test harness: 8 fake CPU devices, a persistent compilation cache, shared data.

XLA_FLAGS must be set before jax is imported anywhere, which is why this
happens at the top of conftest.py, before any test module is collected.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPILATION_CACHE = os.path.join(REPO_ROOT, ".cache", "jax_compilation")
jax.config.update("jax_compilation_cache_dir", COMPILATION_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# The smallest demo corpus that still has every split: a few seconds to build.
TINY_DEMO = dict(num_recordings=12, renditions_per_work=2, seed=0,
                 min_seconds=6.0, max_seconds=12.0)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
  """A tiny demo corpus built once per test session: (BuildResult, settings)."""
  from jplaylist.data.demo import corpus  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path_factory.mktemp("demo_data"))
  settings = corpus.DemoSettings(**TINY_DEMO)
  result = corpus.prepare(data_dir, settings, num_workers=1, verbose=False)
  return result, settings, data_dir


@pytest.fixture(scope="session")
def trained_workdir(tiny_demo, tmp_path_factory):
  """A workdir with a 2-step runlocal demo model trained on the tiny corpus."""
  from configs import demo as demo_config  # pylint: disable=g-import-not-at-top
  from jplaylist.trainers import contrastive  # pylint: disable=g-import-not-at-top
  config = demo_config.get_config("runlocal=True")
  config.input.data_dir = tiny_demo[2]
  config.num_train_steps = 2
  config.eval_every = 0
  path = str(tmp_path_factory.mktemp("trained"))
  contrastive.train_and_evaluate(config, path)
  return path
