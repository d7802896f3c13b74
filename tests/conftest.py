"""Test harness: 8 fake CPU devices, a persistent compilation cache, shared data.

XLA_FLAGS must be set before jax is imported anywhere, which is why this
happens at the top of conftest.py, before any test module is collected.
"""

import os
import socket

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# librosa compiles its numba kernels with cache=True, into its own
# site-packages folder by default. Two pytest-xdist workers compiling the same
# kernel at once in a fresh virtualenv can race on those cache files (a CI run
# died of a segfault in librosa's beat-tracking gufunc that way), so each
# worker keeps its own numba cache (workers inherit the controller's
# environment, so a worker always sets its own).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER or "NUMBA_CACHE_DIR" not in os.environ:
  os.environ["NUMBA_CACHE_DIR"] = os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "numba",
      _WORKER or "main")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPILATION_CACHE = os.path.join(REPO_ROOT, ".cache", "jax_compilation")
jax.config.update("jax_compilation_cache_dir", COMPILATION_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
# Several writers share the cache: pytest-xdist workers (`make test -n 2`) and
# the launchers they start. JAX's file cache writes an entry in place, and two
# writers of one key (whose bytes differ by the recorded compile time) could
# interleave into a corrupt entry; with a size limit set it takes a file lock
# around every read and write. The limit itself is never reached. Set in the
# environment too, so that every launcher subprocess locks as well.
_CACHE_LIMIT_BYTES = 1 << 40
os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(_CACHE_LIMIT_BYTES)
jax.config.update("jax_compilation_cache_max_size", _CACHE_LIMIT_BYTES)


def _add_missing_access_times(cache_dir):
  """Gives entries written without the lock an access-time file.

  A cache filled before the limit was set has no `-atime` files, and the
  locked writer reads one for every entry (to find the least recently used),
  so without them every new entry would fail to be written (a warning).
  """
  if not os.path.isdir(cache_dir):
    return
  names = set(os.listdir(cache_dir))
  stamp = int(os.path.getmtime(cache_dir) * 1e9).to_bytes(8, "little")
  for name in names:
    if name.endswith("-cache") and name[:-len("cache")] + "atime" not in names:
      with open(os.path.join(cache_dir, name[:-len("cache")] + "atime"), "wb") as f:
        f.write(stamp)


_add_missing_access_times(COMPILATION_CACHE)

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


@pytest.fixture(scope="session")
def reserve_port():
  """A function returning a localhost port kept free for a jax.distributed coordinator.

  Binding to port 0 and closing the socket leaves a window in which another
  test (pytest-xdist runs two at once) or a gloo peer may be given the port.
  A socket bound to it with SO_REUSEPORT on every address, held until the
  session ends, keeps the kernel from handing the port to any other bind(0),
  while the coordinator's gRPC server, which binds `[::]:port` with
  SO_REUSEPORT too, can still listen on it. (uvicorn binds without
  SO_REUSEPORT: tests/test_serve.py retries instead.)
  """
  held = []

  def reserve() -> int:
    try:
      sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
      sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too
    except OSError:  # a host without IPv6: IPv4 only
      sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("::" if sock.family == socket.AF_INET6 else "0.0.0.0", 0))
    held.append(sock)
    return sock.getsockname()[1]

  yield reserve
  for sock in held:
    sock.close()


# Files whose tests start multi-process training runs, heaviest first. With
# `--dist loadfile` a worker takes whole files in collection order; starting
# the long ones first keeps one worker from being left alone with one at the end.
_LONG_FILES = ("tests/trainers/test_contrastive.py", "tests/trainers/test_multihost.py",
               "tests/session/test_distributed_study.py", "tests/test_colabs.py",
               "tests/trainers/test_adversarial.py", "tests/trainers/test_user_anchored.py",
               "tests/evaluators/test_cross_validation.py")


def pytest_collection_modifyitems(session, config, items):
  del session, config
  def rank(item):
    path = os.path.relpath(str(item.path), REPO_ROOT)
    return _LONG_FILES.index(path) if path in _LONG_FILES else len(_LONG_FILES)
  items.sort(key=rank)  # stable: every other test keeps its order
