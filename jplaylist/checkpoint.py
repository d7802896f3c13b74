"""Orbax checkpoints of a training run, and warm starts from other runs.

A checkpoint holds the train state (parameters, BatchNorm statistics,
optimizer state, step), the input iterators' states (so a resumed run sees
exactly the batches it would have seen) and the resolved config. Saves are
asynchronous; the last `max_to_keep` are kept. A checkpoint becomes visible
only once it is complete, so a run killed mid-save (even with SIGKILL)
resumes from the previous one.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"


class Checkpointer:
  """Saves and restores (state, input states, config) in `workdir/checkpoints`."""

  def __init__(self, workdir: str, *, max_to_keep: int = 3,
               save_interval_steps: int = 1000, async_save: bool = True):
    self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
    self.save_interval_steps = save_interval_steps
    # The interval is decided here (every save reaching Orbax is forced), so
    # checkpoints land exactly on multiples of the interval.
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, input_states: list[bytes],
           config: ml_collections.ConfigDict | None = None, *, force: bool = False) -> bool:
    """Saves if `step` is on the interval (or `force`); returns whether it did."""
    if not force and (not self.save_interval_steps or step % self.save_interval_steps):
      return False
    if step == self.latest_step():
      return False
    args = {"state": ocp.args.StandardSave(state),
            "input": ocp.args.JsonSave({"iterators": [s.decode() for s in input_states]})}
    if config is not None:
      args["config"] = ocp.args.JsonSave(config.to_dict())
    return self.manager.save(step, args=ocp.args.Composite(**args), force=True)

  def restore(self, abstract_state, step: int | None = None):
    """Restores onto the shardings of `abstract_state` (any device count).

    Returns:
      (state, input states as bytes, saved config dict).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        input=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()))
    return (restored["state"], [s.encode() for s in restored["input"]["iterators"]],
            restored["config"])

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def latest_step(workdir: str) -> int:
  """The newest complete checkpoint step of a workdir."""
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
  steps = ([int(name) for name in os.listdir(directory) if name.isdigit()
            and os.path.exists(os.path.join(directory, name, "commit_success.txt"))]
           if os.path.isdir(directory) else [])
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {directory}")
  return max(steps)


def restore_on_host(workdir: str, step: int | None = None) -> tuple[dict[str, Any], dict]:
  """A checkpoint's train state as host numpy arrays, and its saved config.

  Works whatever the device count that saved it (arrays are read whole onto
  the host): for inference, warm starts and inspection.

  Returns:
    (state dict with "params", "batch_stats", "opt_state", "step"; config dict).
  """
  step = latest_step(workdir) if step is None else step
  path = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR, str(step))
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no checkpoint for step {step} in {os.path.dirname(path)}")
  checkpointer = ocp.PyTreeCheckpointer()
  metadata = checkpointer.metadata(os.path.join(path, "state"))
  tree = getattr(metadata, "item_metadata", metadata)
  tree = getattr(tree, "tree", tree)
  restore_args = jax.tree_util.tree_map(
      lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  state = checkpointer.restore(os.path.join(path, "state"),
                               args=ocp.args.PyTreeRestore(restore_args=restore_args))
  with open(os.path.join(path, "config", "metadata")) as f:
    config = json.load(f)
  return state, config


def restore_params(workdir: str, step: int | None = None) -> dict[str, Any]:
  """The parameters of a run's checkpoint, as host numpy arrays.

  Used to warm-start a tower from a jplaylist workdir: the result's
  ["audio"] or ["text"] subtree replaces the new model's.
  """
  return restore_on_host(workdir, step)[0]["params"]
