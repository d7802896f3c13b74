"""Device meshes, parameter sharding rules, and host batches to global arrays.

The default is data parallelism: a 1-D mesh over every device named "data",
parameters replicated, batches split along their first axis. Large towers
can shard parameters over a second "model" axis with regex rules on the
parameter path, e.g. `(("text/encoder/layer_\\d+/intermediate/dense/kernel",
(None, "model")),)`; the first matching rule wins and unmatched parameters
are replicated.
"""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
  """Joins a multi-process run when a coordinator is given (flag or environment).

  Arguments left None fall back to JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
  and JAX_PROCESS_ID. On CPU hosts cross-process collectives go through gloo
  (no effect on GPU/TPU), whose TCP send buffers are sized here once
  (`prime_gloo_send_buffers`). Every process must call this (a collective on
  CPU). Returns whether jax.distributed was initialised.
  """
  coordinator = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if not coordinator:
    return False
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator_address=coordinator,
      num_processes=num_processes or int(os.environ["JAX_NUM_PROCESSES"]),
      process_id=(process_id if process_id is not None else int(os.environ["JAX_PROCESS_ID"])))
  if jax.process_count() > 1 and jax.default_backend() == "cpu":
    prime_gloo_send_buffers()
  return True


# The message that sizes gloo's send buffers; Linux caps the buffer at
# net.core.wmem_max (4 MiB here, 208 KiB by default), so more buys nothing.
_GLOO_PRIMING_MESSAGE_BYTES = 4 << 20
_GLOO_PRIMING_MAX_BYTES_PER_DEVICE = 64 << 20


def prime_gloo_send_buffers(devices: Sequence[jax.Device] | None = None) -> None:
  """One large reduce-scatter over `devices` (default all), before any other.

  gloo's TCP transport sets SO_SNDBUF on a peer's socket to the size of the
  first message its older `Buffer` path sends there (reduce-scatter takes
  that path; all-reduce and all-gather do not), and raises it only for a
  larger one. Setting SO_SNDBUF also turns off Linux's send-buffer
  autotuning for the socket. A train step's first such message is small
  (the gather loss's reduce-scatter of [B/n, D] gradients: 2 KiB), so the
  socket kept the 4.6 KB minimum buffer for the whole run, and every large
  transfer on it (the gradient all-reduce, the STFT frames XLA all-gathers)
  went one 64 KB segment per delayed ACK (40 ms): ~1.5 MB/s, 6.8 s per step
  of the runlocal demo in two processes on one host, 0.85 s with this. A
  large first message gives every peer's socket a large buffer for good (one
  ~8 MiB exchange at start-up).

  It covers the collectives over the same devices (a data-parallel mesh over
  all of them); collectives over other device groups use other gloo
  contexts and sockets. Every process must call it. CPU only.
  """
  devices = list(devices if devices is not None else jax.devices())
  axis = "devices"
  mesh = Mesh(np.asarray(devices), (axis,))
  # Halving-doubling's smallest message is about 1/len(devices) of the buffer.
  per_device = min(len(devices) * _GLOO_PRIMING_MESSAGE_BYTES,
                   _GLOO_PRIMING_MAX_BYTES_PER_DEVICE) // 4
  sharding = NamedSharding(mesh, P(axis))
  ones = np.ones((1, per_device), np.float32)
  with jax.transfer_guard("allow"):
    buffer = jax.make_array_from_callback((len(devices), per_device), sharding,
                                          lambda _: ones)
    scatter = jax.jit(jax.shard_map(
        lambda x: jax.lax.psum_scatter(x, axis, scatter_dimension=1, tiled=True),
        mesh=mesh, in_specs=P(axis), out_specs=P(axis)))
    jax.block_until_ready(scatter(buffer))


def make_mesh(axes: Sequence[tuple[str, int]] = (("data", -1),),
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh from (name, size) pairs, laid out by `jax.make_mesh`.

  One size may be -1: all remaining devices. With every size given, the mesh
  takes the first prod(sizes) devices (e.g. to resume a run on fewer).
  `jax.make_mesh` orders those devices for the hardware's topology (e.g. a
  ring on TPU); on CPU the order is the given one.
  Axes are `AxisType.Auto`, the sharding-in-types-free mode every `jit` and
  `shard_map` here is written for (`jax.make_mesh` defaults to Explicit).
  """
  devices = list(devices if devices is not None else jax.devices())
  names = [name for name, _ in axes]
  sizes = [int(size) for _, size in axes]
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 not in sizes and known < len(devices):
    devices = devices[:known]
  if sizes.count(-1) > 1 or len(devices) % known:
    raise ValueError(f"mesh {dict(axes)} does not fit {len(devices)} devices")
  sizes = [len(devices) // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != len(devices):
    raise ValueError(f"mesh {dict(zip(names, sizes))} needs {int(np.prod(sizes))} "
                     f"devices, have {len(devices)}")
  return jax.make_mesh(tuple(sizes), tuple(names),
                       axis_types=(AxisType.Auto,) * len(names), devices=devices)


def path_str(path) -> str:
  """A pytree key path as "a/b/c", the form the regex rules match."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def param_specs(params, rules: Sequence[tuple[str, Sequence[str | None]]] = ()) -> Any:
  """PartitionSpec per parameter from regex rules (first match wins)."""
  compiled = [(re.compile(pattern), P(*spec)) for pattern, spec in rules]

  def spec_for(path, leaf):
    name = path_str(path)
    for regex, spec in compiled:
      if regex.search(name):
        if len(spec) > np.ndim(leaf):
          raise ValueError(f"rule {regex.pattern!r} gives {spec} for {name} of "
                           f"shape {np.shape(leaf)}")
        return spec
    return P()
  return jax.tree_util.tree_map_with_path(spec_for, params)


def shardings(mesh: Mesh, specs) -> Any:
  return jax.tree_util.tree_map(lambda s: NamedSharding(mesh, s), specs,
                                is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh, data_axis: str = "data") -> NamedSharding:
  return NamedSharding(mesh, P(data_axis))


def host_batch_to_global(batch: dict[str, np.ndarray], mesh: Mesh,
                         data_axis: str = "data") -> dict[str, jax.Array]:
  """This host's slice of the global batch -> global arrays split over data_axis."""
  sharding = batch_sharding(mesh, data_axis)
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in batch.items()}
