"""A study's sessions over several processes (`jax.distributed`): who runs which.

Each process runs one contiguous block of session indices on its own devices
(`study.run` shards its block over the local devices), and at the end the
per-session records of every process are gathered so that every process holds
all of them, in session order; process 0 alone writes the summary and report.
No cross-process traffic happens while sessions run, and a session's random
draws are `fold_in(rng, session index)`, so its records depend on the seed and
its index only, not on how many processes or devices share the work.

Uneven counts are padded, never refused: B sessions over P processes of D
devices each run ceil(B / P) sessions per process, rounded up to a multiple of
the devices a block uses; the padding at the end of the global order repeats
the last session and is dropped after the gather.
"""

from __future__ import annotations

import dataclasses
import math

import jax
from jax.experimental import multihost_utils
import numpy as np


@dataclasses.dataclass(frozen=True)
class SessionBlocks:
  """The split of `num_sessions` sessions over processes and their devices.

  Attributes:
    num_sessions: B, the real sessions.
    per_process: sessions each process runs, padding included; a multiple of
      `num_devices`, the same on every process (the gather stacks equal shapes).
    num_devices: local devices each process shards its block over.
    process_index: this process.
    process_count: P.
  """
  num_sessions: int
  per_process: int
  num_devices: int
  process_index: int
  process_count: int

  @property
  def padded_sessions(self) -> int:
    """P * per_process: the global count, padding included."""
    return self.per_process * self.process_count

  @property
  def session_ids(self) -> np.ndarray:
    """[per_process] int32 global indices of this process's block (>= B: padding)."""
    start = self.process_index * self.per_process
    return np.arange(start, start + self.per_process, dtype=np.int32)

  def take(self, plan):
    """This process's sessions of a plan whose every leaf leads with [B]; padding
    repeats the last session."""
    return jax.tree.map(lambda x: x[np.minimum(self.session_ids, self.num_sessions - 1)],
                        plan)

  def describe(self) -> str:
    padding = self.padded_sessions - self.num_sessions
    return (f"{self.num_sessions} sessions over {self.process_count} process(es) x "
            f"{self.num_devices} device(s): {self.per_process} per process"
            + (f", {padding} padding session(s) dropped" if padding else ""))


def blocks(num_sessions: int, *, process_index: int | None = None,
           process_count: int | None = None,
           local_device_count: int | None = None) -> SessionBlocks:
  """Splits B sessions into equal contiguous blocks, one per process.

  Args:
    num_sessions: B >= 1.
    process_index, process_count, local_device_count: default to jax's.

  Returns:
    The split (see `SessionBlocks`).
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  local_device_count = (jax.local_device_count() if local_device_count is None
                        else local_device_count)
  if num_sessions < 1:
    raise ValueError(f"num_sessions={num_sessions}: a study needs at least one session")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} outside {process_count} processes")
  if local_device_count < 1:
    raise ValueError(f"local_device_count={local_device_count}: need at least one device")
  per_process = math.ceil(num_sessions / process_count)
  num_devices = min(local_device_count, per_process)
  per_process = math.ceil(per_process / num_devices) * num_devices
  return SessionBlocks(num_sessions=num_sessions, per_process=per_process,
                       num_devices=num_devices, process_index=process_index,
                       process_count=process_count)


def check_devices() -> None:
  """Every process must hold as many devices as the others (equal blocks)."""
  if jax.device_count() != jax.process_count() * jax.local_device_count():
    raise ValueError(f"{jax.device_count()} devices over {jax.process_count()} processes "
                     f"with {jax.local_device_count()} on process {jax.process_index()}: "
                     "every process must have the same number of devices")


def gather(records: dict[str, np.ndarray], split: SessionBlocks) -> dict[str, np.ndarray]:
  """All processes' records, in session order, padding dropped.

  Args:
    records: this process's block, each [V, per_process, ...] (numpy).
    split: the split the block was run under.

  Returns:
    Each record as [V, B, ...], on every process.
  """
  for name, value in records.items():
    if value.ndim < 2 or value.shape[1] != split.per_process:
      raise ValueError(f"record {name!r} has shape {value.shape}; expected "
                       f"[variants, {split.per_process}, ...]")
  if split.process_count > 1:
    check_devices()
    # Booleans travel as bytes, a precaution (gathering them as predicates
    # over gloo was not tried): a byte view is free and exact.
    booleans = {k for k, v in records.items() if v.dtype == np.bool_}
    stacked = multihost_utils.process_allgather(
        {k: v.view(np.uint8) if k in booleans else v for k, v in records.items()})
    records = {}
    for name, value in stacked.items():  # [P, V, per_process, ...]
      value = np.moveaxis(value, 0, 1)
      value = value.reshape((value.shape[0], split.padded_sessions) + value.shape[3:])
      records[name] = value.view(np.bool_) if name in booleans else value
  return {k: v[:, :split.num_sessions] for k, v in records.items()}
