"""Stopping a training loop on SIGTERM or SIGINT at a step every process agrees on.

A preempted pod sends SIGTERM to some hosts, not necessarily all, and not at
the same moment. If each process left its loop on its own signal, processes
would stop at different steps and wait forever in each other's collectives.
Here a signal only sets a local flag; every `check_every` steps all
processes exchange their flags (a max over processes), so they all leave the
loop after the same step, and can then save one checkpoint together.

Why not jax's preemption sync point (`multihost_utils.
reached_preemption_sync_point`): it exists only once `jax.distributed` is
initialised, listens to SIGTERM alone through a C++ handler that a Python
handler replaces, and so would need a second path for one-process runs and
Ctrl-C. The exchange here is the same code for one process and for many; it
costs one scalar all-gather per check, and the loop already waits for each
step's metrics on the host.

  stop = preemption.StopRequest(check_every=config.preemption_check_every)
  with stop:
    while step < num_steps:
      ...one step...
      if stop.should_stop(step):
        break
  if stop.stopped: save(step, force=True)
"""

from __future__ import annotations

import signal
from typing import Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np


class StopRequest:
  """A stop requested by a signal to any process, agreed by all at one step.

  Use as a context manager around the loop: it installs handlers for
  `signals` on entry and restores the previous ones on exit. A second signal
  SIGINT while the loop is winding down interrupts at once (Ctrl-C twice);
  a second SIGTERM is ignored (the save is already coming).
  """

  def __init__(self, check_every: int = 1,
               signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)):
    if check_every < 1:
      raise ValueError(f"preemption_check_every must be >= 1, got {check_every}")
    self.check_every = check_every
    self.signals = tuple(signals)
    self.received: int | None = None  # the signal this process got
    self.stopped = False              # agreed by every process
    self._previous = {}

  def __enter__(self) -> StopRequest:
    return self.install()

  def __exit__(self, *exc_info):
    self.uninstall()

  def install(self) -> StopRequest:
    """Handles `signals` from now on (main thread only)."""
    self._previous = {s: signal.signal(s, self._handle) for s in self.signals}
    return self

  def uninstall(self):
    """Puts the previous handlers back."""
    for signum, handler in self._previous.items():
      # None: the previous handler was not installed from Python.
      signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    if self.received is None:
      self.received = signum

  def should_stop(self, step: int) -> bool:
    """Whether to leave the loop after `step`; the same answer on every process.

    Every process must call this after every step (it is a collective on the
    steps that are multiples of `check_every` when there are several).
    """
    if self.stopped:
      return True
    if jax.process_count() == 1:
      self.stopped = self.received is not None
    elif step % self.check_every == 0:
      self.stopped = any_process(self.received is not None)
    return self.stopped

  @property
  def reason(self) -> str:
    if self.received is not None:
      return f"signal {signal.Signals(self.received).name}"
    return "a signal to another process"


def any_process(flag: bool) -> bool:
  """True on every process if `flag` is true on any (a collective)."""
  # The flag travels through the devices on purpose: allow that copy even
  # under the launchers' transfer guard.
  with jax.transfer_guard("allow"):
    flags = multihost_utils.process_allgather(np.asarray([flag], np.int32))
  return bool(np.max(flags))
