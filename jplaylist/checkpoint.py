"""Orbax checkpoints of a training run, and warm starts from other runs.

A checkpoint holds the train state (parameters, BatchNorm statistics,
optimizer state, step), the input iterators' states (so a resumed run sees
exactly the batches it would have seen) and the resolved config. Saves are
asynchronous; the last `max_to_keep` are kept. A checkpoint becomes visible
only once it is complete, so a run killed mid-save (even with SIGKILL)
resumes from the previous one.

Input states are per input shard: every process writes the states of the
shards it reads (`input_states/shard_<k>-of-<n>.json`) and restores only
those. Restoring compares the saved config with the new one
(`check_config_change`) and refuses changes that would alter the run.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from typing import Any, Mapping, Sequence

from etils import epath
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"
INPUT_ITEM = "input_states"
_LEGACY_INPUT_ITEM = "input"  # before per-shard states: process 0's list only

# Config fields a resumed run may change without being asked: they decide how
# long the run goes, what is logged, evaluated or kept, and how arrays are laid
# out on devices, never which batches are drawn or how an update is computed.
# (num_train_steps: the schedule counts from warmup_steps/decay_steps only;
# input.num_shards: the per-shard input states refuse a different effective
# shard count by themselves; warm_start: read only when a run starts fresh.)
RESUME_MAY_CHANGE = (
    "num_train_steps", "log_every", "checkpoint_every", "keep_checkpoints",
    "eval_every", "eval_batches", "evals", "targets", "warm_start",
    "max_nonfinite_steps", "preemption_check_every", "mesh", "param_rules",
    "input.num_shards", "input.eval_split",
)


class InputStatesHandler(ocp.handlers.AsyncCheckpointHandler):
  """Each process writes and reads the states of its own input shards.

  Why files per shard rather than one JSON (which Orbax writes on the primary
  process only) or a global array of per-process bytes: the states are a few
  hundred bytes of text that every process already holds, naming them by
  shard keeps them readable and lets a run resume on another process count
  with the same shards. They are written inside the step's temporary
  directory before the commit barrier, so they are exactly as atomic as the
  arrays beside them.
  """

  def _write(self, directory: epath.Path, args: InputStatesSave):
    for shard, state in args.states.items():
      path = directory / _shard_file(shard, args.num_shards)
      path.write_text(state.decode() if isinstance(state, bytes) else state)

  async def async_save(self, directory: epath.Path, args: InputStatesSave):
    async def write():
      self._write(directory, args)
    # Runs once Orbax has created `directory` (on the primary process) and
    # signalled it, like Orbax's own JSON handler.
    return [ocp.future.CommitFutureAwaitingContractedSignals(write(),
                                                            name="input_states_save")]

  def save(self, directory: epath.Path, args: InputStatesSave):
    self._write(directory, args)

  def restore(self, directory: epath.Path, args: InputStatesRestore) -> list[bytes]:
    states = []
    for shard in args.shards:
      path = directory / _shard_file(shard, args.num_shards)
      if not path.exists():
        saved = sorted(p.name for p in directory.glob("shard_*.json"))
        raise FileNotFoundError(
            f"no input state {path.name} in {directory} (it holds {saved}): the "
            f"checkpoint was written with another number of input shards; set "
            f"input.num_shards to the saved count")
      states.append(path.read_text().encode())
    return states

  def metadata(self, directory: epath.Path):
    del directory
    return None

  def finalize(self, directory: epath.Path):
    del directory

  def close(self):
    pass


def _shard_file(shard: int, num_shards: int) -> str:
  return f"shard_{shard}-of-{num_shards}.json"


@ocp.args.register_with_handler(InputStatesHandler, for_save=True)
@dataclasses.dataclass
class InputStatesSave(ocp.args.CheckpointArgs):
  states: Mapping[int, bytes]  # input shard index -> iterator state
  num_shards: int


@ocp.args.register_with_handler(InputStatesHandler, for_restore=True)
@dataclasses.dataclass
class InputStatesRestore(ocp.args.CheckpointArgs):
  shards: Sequence[int]
  num_shards: int


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

  def save(self, step: int, state, input_states: Mapping[int, bytes], num_shards: int,
           config: ml_collections.ConfigDict | None = None, *, force: bool = False) -> bool:
    """Saves if `step` is on the interval (or `force`); returns whether it did.

    Every process calls this at the same step (the save is collective).

    Args:
      step: the train step the state is at.
      state: the train state pytree of global arrays.
      input_states: this process's input shards, shard index -> iterator state.
      num_shards: the input shards of the whole run.
      config: the run's config, saved beside the state.
      force: save off the interval.
    """
    if not force and (not self.save_interval_steps or step % self.save_interval_steps):
      return False
    if step == self.latest_step():
      return False
    args = {"state": ocp.args.StandardSave(state),
            INPUT_ITEM: InputStatesSave(dict(input_states), num_shards)}
    if config is not None:
      args["config"] = ocp.args.JsonSave(config.to_dict())
    return self.manager.save(step, args=ocp.args.Composite(**args), force=True)

  def saved_config(self, step: int | None = None) -> dict | None:
    """The config saved with a checkpoint (None if it has none)."""
    step = self.latest_step() if step is None else step
    path = os.path.join(self.directory, str(step), "config", "metadata")
    if not os.path.exists(path):
      return None
    with open(path) as f:
      return json.load(f)

  def restore(self, abstract_state, shards: Sequence[int], num_shards: int,
              step: int | None = None):
    """Restores onto the shardings of `abstract_state` (any device count).

    Args:
      abstract_state: the state's ShapeDtypeStructs with shardings.
      shards: the input shards this process reads.
      num_shards: the input shards of the whole run.
      step: the checkpoint; default the latest.

    Returns:
      (state, input states of `shards` as bytes, saved config dict).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    step_dir = os.path.join(self.directory, str(step))
    legacy = not os.path.isdir(os.path.join(step_dir, INPUT_ITEM))
    if legacy and jax.process_count() > 1:
      raise ValueError(f"{step_dir} holds the input state of process 0 only (written "
                       f"before per-shard input states); resume it on one process")
    input_args = (ocp.args.JsonRestore() if legacy
                  else InputStatesRestore(tuple(shards), num_shards))
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        config=ocp.args.JsonRestore(),
        **{_LEGACY_INPUT_ITEM if legacy else INPUT_ITEM: input_args}))
    input_states = ([s.encode() for s in restored[_LEGACY_INPUT_ITEM]["iterators"]]
                    if legacy else restored[INPUT_ITEM])
    return restored["state"], input_states, restored["config"]

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


# ------------------------------------------------------ config on resume ----
_ABSENT = "(absent)"


def _plain(value):
  """A config value as it reads back from JSON: dicts and lists only."""
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def config_changes(saved: Mapping[str, Any], new: Mapping[str, Any] | ml_collections.ConfigDict,
                   ) -> list[tuple[str, Any, Any]]:
  """Fields that differ between a saved config and a new one.

  Both are compared as JSON reads them back (tuples become lists). Dicts are
  compared field by field; other values, lists included, as a whole.

  Returns:
    Sorted (dotted path, saved value, new value); a field on one side only
    has the string "(absent)" on the other.
  """
  changes = []

  def walk(path, old, new):
    if isinstance(old, dict) and isinstance(new, dict):
      for key in sorted(set(old) | set(new)):
        walk(f"{path}.{key}" if path else key, old.get(key, _ABSENT), new.get(key, _ABSENT))
    elif old != new:
      changes.append((path, old, new))
  walk("", _plain(saved), _plain(new))
  return changes


def _allowed(path: str, patterns: Sequence[str]) -> bool:
  return any(path == p or path.startswith(p + ".") or fnmatch.fnmatchcase(path, p)
             for p in patterns)


class ConfigChangedError(ValueError):
  """A resumed run's config changes fields that alter the run."""


def check_config_change(saved: Mapping[str, Any],
                        new: Mapping[str, Any] | ml_collections.ConfigDict, *,
                        allow: Sequence[str] = (), where: str = "the checkpoint",
                        ) -> list[tuple[str, Any, Any]]:
  """Refuses a resume whose config changes fields that alter the run.

  Args:
    saved: the config saved with the checkpoint (a JSON dict).
    new: the resuming run's config.
    allow: more fields that may change, as dotted paths, their parents
      ("optimizer" allows every optimizer field) or fnmatch patterns.
      RESUME_MAY_CHANGE are always allowed.
    where: names the checkpoint in the error.

  Returns:
    The allowed changes, (dotted path, saved, new), to report.

  Raises:
    ConfigChangedError: naming every refused field, old -> new. A field
      absent from the saved config is refused only when its new value is
      not an off value (0, False, "", None or empty).
  """
  changes = config_changes(saved, new)
  patterns = (*RESUME_MAY_CHANGE, *allow)
  # A field the library gained after the checkpoint was written, at an off
  # value (0, False, "", empty), is the behaviour the checkpoint trained
  # with: new options here default to off.
  refused = [(path, old, new_value) for path, old, new_value in changes
             if not _allowed(path, patterns) and not (old == _ABSENT and not new_value)]
  if refused:
    lines = "\n".join(f"  {path}: {old!r} -> {new!r}" for path, old, new in refused)
    raise ConfigChangedError(
        f"the config differs from the one saved with {where} in fields that change "
        f"the run:\n{lines}\nResume with the saved config, use a new workdir, or "
        f"allow these changes (launch.train: --allow_config_change="
        f"{','.join(path for path, _, _ in refused)}).")
  return changes
