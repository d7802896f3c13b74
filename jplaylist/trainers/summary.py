"""Training metrics: TensorBoard event files, a JSONL log and a console progress bar.

Only process 0 writes. `metrics.jsonl` holds one line per logged step (the
same scalars as TensorBoard), which tests and notebooks read without
TensorBoard.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import tqdm


class Writer:
  """Writes scalars to `workdir/tensorboard` and `workdir/metrics.jsonl`."""

  def __init__(self, workdir: str, total_steps: int):
    self.enabled = jax.process_index() == 0
    self.tensorboard_dir = os.path.join(workdir, "tensorboard")
    if not self.enabled:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self.tensorboard = SummaryWriter(self.tensorboard_dir)
    self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)
    self.progress = tqdm.tqdm(total=total_steps, unit="step",
                              desc="train", file=sys.stdout, dynamic_ncols=True,
                              mininterval=2.0)

  def scalars(self, step: int, metrics: dict[str, float], prefix: str = "train"):
    if not self.enabled:
      return
    for name, value in metrics.items():
      self.tensorboard.add_scalar(f"{prefix}/{name}", value, step)
    self.jsonl.write(json.dumps({"step": step, "split": prefix,
                                 **{k: float(v) for k, v in metrics.items()}}) + "\n")

  def start_at(self, step: int):
    """Where the progress bar starts (a resumed run)."""
    if self.enabled:
      self.progress.n = self.progress.last_print_n = step

  def advance(self, steps: int, postfix: dict[str, float] | None = None):
    if not self.enabled:
      return
    if postfix:
      self.progress.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
    self.progress.update(steps)

  def message(self, text: str):
    if self.enabled:
      self.progress.write(text)

  def close(self):
    if not self.enabled:
      return
    self.progress.close()
    self.tensorboard.close()
    self.jsonl.close()


def read_metrics(workdir: str, split: str = "train") -> list[dict]:
  """The logged metrics of a run, in order (a resumed run appends)."""
  path = os.path.join(workdir, "metrics.jsonl")
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [r for r in rows if r["split"] == split]
