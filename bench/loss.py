r"""Step time and compiled peak memory of the contrastive loss implementations.

  python -m bench.loss                            # clip; B = 1024, 6144, 65536
  python -m bench.loss --kind=mulan --batch_sizes=1024,6144

For each global batch size B (d = 128 by default, random unit vectors), five
ways to compute the same loss, value and gradient with respect to both
embeddings and the temperature, each compiled with `jax.jit`:

  plain    one device holds the whole batch and the [B, B] logits.
  chunked  one device holds the whole batch; columns in blocks of
           --chunk_size (peak memory B x chunk_size).
  gather   the batch split over 8 devices; each holds its B/8 rows against
           all-gathered columns (B/8 x B per device).
  ring     the batch split over 8 devices; column blocks hop around the ring
           (B/8 x B/8 per device).
  ring_chunked  as ring, each visiting block folded --chunk_size texts at a
           time (B/8 x chunk_size per device).

"ms" is the best of --repeats calls after one warm-up call; above
--single_run_above it is one call, without warm-up beyond compilation (a call
at B = 65,536 is a minute of 2 CPU cores). The 8 devices are
fake CPU devices (--xla_force_host_platform_device_count=8) sharing this
machine's cores, so sharded times measure the total work of all devices plus
their copies, not the speed-up 8 real devices would give.

"MiB/device" is XLA's own account of the compiled step
(`compiled.memory_analysis()`): argument + output + temporary bytes of one
device's program; "temp MiB" is the temporary part alone, the one that grows
with the logits. Temporaries are the peak of simultaneously live
intermediates as XLA's buffer assignment packs them, so the sum is the memory
the step needs on one device, beyond the compiled code and the runtime's own
overhead. It comes from compilation alone, so it is reported for every step;
a step is run only if all its devices together fit in --memory_fraction of
the memory the host has available, otherwise its time reads "skipped" and the
reason is printed. The default leaves room for what the figure leaves out: in
a fresh process the resident set grew about 10% more than the figure, and
earlier steps leave memory with the allocator (on a 24 GiB host, plain at
B = 32768, 16.1 GiB by this figure, was killed for memory at 20.7 GiB).
"""

import gc
import os
import time

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=8").strip()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bench import roofline
from jplaylist import losses
# pylint: enable=g-import-not-at-top,wrong-import-position

IMPLEMENTATIONS = ("plain", "chunked", "gather", "ring", "ring_chunked")
SHARDED = ("gather", "ring", "ring_chunked")

_KIND = flags.DEFINE_enum("kind", "clip", losses.KINDS, "Loss kind.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1024", "6144", "65536"],
                                 "Global batch sizes (drop one to skip it).")
_IMPLEMENTATIONS = flags.DEFINE_list("implementations", list(IMPLEMENTATIONS),
                                     "Which implementations to measure.")
_DIM = flags.DEFINE_integer("dim", 128, "Embedding dimension d.")
_CHUNK_SIZE = flags.DEFINE_integer(
    "chunk_size", 512, "Columns per chunk for 'chunked' and 'ring_chunked'.")
_NUM_DEVICES = flags.DEFINE_integer("num_devices", 8, "Devices of the sharded variants.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls (the best is kept).")
_SINGLE_RUN_ABOVE = flags.DEFINE_integer(
    "single_run_above", 8192, "Batch sizes above this are timed by one call.")
_MEMORY_FRACTION = flags.DEFINE_float(
    "memory_fraction", 0.75, "Run a step only if all its devices' compiled memory "
    "fits in this fraction of the host's available memory.")
_TEMPERATURE = 0.07
_SIGLIP_BIAS = -10.0


def _available_bytes() -> int:
  """MemAvailable from /proc/meminfo (Linux); unbounded elsewhere."""
  try:
    with open("/proc/meminfo") as meminfo:
      for line in meminfo:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 2**63


def _step_and_inputs(implementation: str, batch_size: int, kind: str):
  """(value-and-grad step, its arguments, number of devices it runs on)."""
  key_audio, key_text = jax.random.split(jax.random.key(0))
  unit = lambda z: z / jnp.linalg.norm(z, axis=-1, keepdims=True)
  za = unit(jax.random.normal(key_audio, (batch_size, _DIM.value), jnp.float32))
  zt = unit(jax.random.normal(key_text, (batch_size, _DIM.value), jnp.float32))
  args = [za, zt, jnp.float32(_TEMPERATURE)]
  if kind == "siglip":
    args.append(jnp.float32(_SIGLIP_BIAS))

  if implementation in SHARDED:
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:_NUM_DEVICES.value]), ("data",))
    chunked = implementation == "ring_chunked"
    loss_fn = losses.make_sharded_loss(
        mesh, kind=kind, implementation="ring" if chunked else implementation,
        chunk_size=_CHUNK_SIZE.value if chunked else None)
    split = NamedSharding(mesh, P("data"))
    args[:2] = [jax.device_put(z, split) for z in args[:2]]
    num_devices = _NUM_DEVICES.value
  else:
    options = {}
    if implementation == "chunked":
      options = dict(implementation="chunked", chunk_size=_CHUNK_SIZE.value)
    loss_fn = lambda za, zt, temperature, bias=None: losses.contrastive_loss(
        za=za, zt=zt, temperature=temperature, bias=bias, kind=kind, **options)
    num_devices = 1
  grad_fn = jax.value_and_grad(loss_fn, argnums=tuple(range(len(args))), has_aux=True)
  return jax.jit(grad_fn), args, num_devices


def measure(implementation: str, batch_size: int, kind: str, repeats: int,
            memory_fraction: float):
  """Returns (seconds per call or None if skipped, bytes per device,
  temporary bytes per device, note)."""
  step, args, num_devices = _step_and_inputs(implementation, batch_size, kind)
  compiled = step.lower(*args).compile()
  memory = compiled.memory_analysis()
  per_device = (memory.temp_size_in_bytes + memory.argument_size_in_bytes
                + memory.output_size_in_bytes)
  needed, available = per_device * num_devices, _available_bytes()
  if needed > memory_fraction * available:
    return None, per_device, memory.temp_size_in_bytes, (
        f"not run: {num_devices} device(s) x {per_device / 2**30:.1f} GiB > "
        f"{memory_fraction:.0%} of the {available / 2**30:.1f} GiB available")
  if batch_size > _SINGLE_RUN_ABOVE.value:
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    seconds = time.perf_counter() - start
  else:
    seconds = roofline.best_time(lambda: compiled(*args), repeats)
  return seconds, per_device, memory.temp_size_in_bytes, ""


def main(argv):
  del argv
  kind = _KIND.value
  unknown = set(_IMPLEMENTATIONS.value) - set(IMPLEMENTATIONS)
  if unknown:
    raise app.UsageError(f"--implementations: unknown {sorted(unknown)}; "
                         f"known: {', '.join(IMPLEMENTATIONS)}")
  if len(jax.devices()) < _NUM_DEVICES.value:
    raise app.UsageError(f"--num_devices={_NUM_DEVICES.value} but only "
                         f"{len(jax.devices())} devices are visible")
  device = jax.devices()[0]
  print(f"{device.platform} ({device.device_kind}), {len(jax.devices())} devices, "
        f"{os.cpu_count()} cores; kind={kind}, d={_DIM.value}, "
        f"chunk_size={_CHUNK_SIZE.value}, temperature={_TEMPERATURE}; "
        f"value and grad, best of {_REPEATS.value}; \"(1)\": one call (B > "
        f"{_SINGLE_RUN_ABOVE.value})")
  print(f"| {'B':>6} | {'implementation':<14} | {'devices':>7} | {'ms':>10} | "
        f"{'vs plain':>8} | {'MiB/device':>10} | {'temp MiB':>10} | {'vs plain':>8} |")
  print(f"|{'-' * 8}|{'-' * 16}|{'-' * 9}|{'-' * 12}|{'-' * 10}|{'-' * 12}|{'-' * 12}"
        f"|{'-' * 10}|")
  notes = []
  for batch_size in map(int, _BATCH_SIZES.value):
    baseline = {}
    for implementation in [i for i in IMPLEMENTATIONS if i in _IMPLEMENTATIONS.value]:
      seconds, per_device, temp, note = measure(implementation, batch_size, kind,
                                                _REPEATS.value, _MEMORY_FRACTION.value)
      devices = _NUM_DEVICES.value if implementation in SHARDED else 1
      if implementation == "plain":
        baseline = {"seconds": seconds, "bytes": per_device}
      time_text = "not run" if seconds is None else f"{seconds * 1e3:.1f}"
      if seconds is not None and batch_size > _SINGLE_RUN_ABOVE.value:
        time_text += " (1)"
      time_ratio = (f"{seconds / baseline['seconds']:.2f}x"
                    if seconds and baseline.get("seconds") else "-")
      memory_ratio = (f"{per_device / baseline['bytes']:.3f}x"
                      if baseline.get("bytes") else "-")
      print(f"| {batch_size:>6} | {implementation:<14} | {devices:>7} | {time_text:>10} | "
            f"{time_ratio:>8} | {per_device / 2**20:>10.1f} | {temp / 2**20:>10.1f} | "
            f"{memory_ratio:>8} |",
            flush=True)
      if note:
        notes.append(f"B={batch_size} {implementation}: {note}")
      gc.collect()  # the step's buffers go before the next one is built
  for note in notes:
    print(note)
  print(f"measured {len(_BATCH_SIZES.value)} batch sizes x "
        f"{len(_IMPLEMENTATIONS.value)} implementations; nothing written")


if __name__ == "__main__":
  app.run(main)
