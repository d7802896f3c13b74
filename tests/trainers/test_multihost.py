"""Two training processes (jax.distributed over localhost, gloo): resume after
kill -9 of both, and a SIGTERM to one process stopping both at the same step.

Each process has one CPU device and reads its own input shard; both runs are
compared with one uninterrupted two-process run of the same config.
"""

import os
import re
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from jplaylist import checkpoint as checkpoint_lib
from jplaylist.trainers import summary
from tests.trainers.test_contrastive import PLAIN_MODEL, REPO, _env, _train_command

NUM_STEPS = 10
# No evaluators and no optional model paths: they are not what these tests
# are about, and cost time.
_QUIET = ["--config.evals.zero_shot.every=0", "--config.evals.text_to_music.every=0",
          *PLAIN_MODEL]


def _start_pair(port, data_dir, workdir, *overrides):
  """Both processes of a 2-process run, each with 1 device; stdout+stderr piped.

  `port`: the coordinator's, from the `reserve_port` fixture (tests/conftest.py).
  """
  return [subprocess.Popen(
      _train_command(data_dir, workdir, *_QUIET, *overrides) + [
          f"--coordinator_address=localhost:{port}", "--num_processes=2",
          f"--process_id={i}"],
      cwd=REPO, env=_env(devices=1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(2)]


def _finish(processes, timeout=900):
  try:
    outputs = [p.communicate(timeout=timeout)[0] for p in processes]
  finally:  # never leave a process waiting for its peer
    for p in processes:
      if p.poll() is None:
        p.kill()
  assert all(p.returncode == 0 for p in processes), (
      f"return codes {[p.returncode for p in processes]}\n--- process 0:\n"
      f"{outputs[0][-3000:]}\n--- process 1:\n{outputs[1][-3000:]}")
  return outputs


def _wait_for_rows(workdir, processes, count, timeout=900):
  deadline = time.time() + timeout
  path = workdir / "metrics.jsonl"
  while time.time() < deadline:
    if path.exists() and len(path.read_text().splitlines()) >= count:
      return
    if any(p.poll() is not None for p in processes):
      raise AssertionError("a process ended early:\n" + "\n".join(
          p.communicate()[0][-3000:] for p in processes))
    time.sleep(0.05)
  raise AssertionError(f"fewer than {count} steps logged in {timeout} s")


def _params(workdir):
  return jax.tree_util.tree_leaves(checkpoint_lib.restore_params(str(workdir)))


@pytest.fixture(scope="module")
def uninterrupted(tiny_demo, tmp_path_factory, reserve_port):
  """An uninterrupted 2-process run of NUM_STEPS steps: (workdir, loss by step)."""
  workdir = tmp_path_factory.mktemp("uninterrupted")
  _finish(_start_pair(reserve_port(), tiny_demo[2], workdir,
                      f"--config.num_train_steps={NUM_STEPS}", "--config.checkpoint_every=100"))
  rows = summary.read_metrics(str(workdir))
  assert [r["step"] for r in rows] == list(range(1, NUM_STEPS + 1))
  return workdir, {r["step"]: r["loss"] for r in rows}


def _assert_same_run(workdir, uninterrupted):
  """Every logged step (those run twice too) and the final parameters agree."""
  reference, reference_loss = uninterrupted
  rows = summary.read_metrics(str(workdir))
  assert rows[-1]["step"] == NUM_STEPS
  for row in rows:
    np.testing.assert_allclose(row["loss"], reference_loss[row["step"]], rtol=0, atol=1e-5,
                               err_msg=f"step {row['step']}")
  for a, b in zip(_params(reference), _params(workdir), strict=True):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_kill_9_of_both_processes_then_resume_gives_the_same_run(tiny_demo, tmp_path,
                                                                 uninterrupted, reserve_port):
  data_dir = tiny_demo[2]
  # The first run is set to go on far past NUM_STEPS, so the kill cannot come
  # too late; the resume shortens it (num_train_steps may change on resume).
  processes = _start_pair(reserve_port(), data_dir, tmp_path, "--config.num_train_steps=1000",
                          "--config.checkpoint_every=2")
  _wait_for_rows(tmp_path, processes, 5)
  for p in processes:
    p.send_signal(signal.SIGKILL)
  for p in processes:
    p.communicate()
  killed_at = len((tmp_path / "metrics.jsonl").read_text().splitlines())
  assert killed_at < NUM_STEPS
  outputs = _finish(_start_pair(reserve_port(), data_dir, tmp_path,
                                f"--config.num_train_steps={NUM_STEPS}",
                                "--config.checkpoint_every=2"))
  resumed = re.search(r"resumed from step (\d+)", outputs[0])
  assert resumed and 2 <= int(resumed.group(1)) <= killed_at, outputs[0][-3000:]
  _assert_same_run(tmp_path, uninterrupted)


def test_sigterm_to_the_second_process_stops_both_at_one_step(tiny_demo, tmp_path,
                                                             uninterrupted, reserve_port):
  data_dir = tiny_demo[2]
  processes = _start_pair(reserve_port(), data_dir, tmp_path, "--config.num_train_steps=1000",
                          "--config.checkpoint_every=1000")
  _wait_for_rows(tmp_path, processes, 3)
  processes[1].send_signal(signal.SIGTERM)
  outputs = _finish(processes)
  stops = [re.search(r"Process (\d): stopped at step (\d+) \((.*?)\)", out)
           for out in outputs]
  assert all(stops), outputs[0][-3000:] + outputs[1][-3000:]
  assert [int(s.group(1)) for s in stops] == [0, 1]
  assert stops[0].group(3) == "a signal to another process"
  assert stops[1].group(3) == "signal SIGTERM"
  stop_step = int(stops[0].group(2))
  assert int(stops[1].group(2)) == stop_step and 3 <= stop_step < NUM_STEPS
  checkpoints = os.listdir(tmp_path / "checkpoints")
  assert [c for c in checkpoints if c.isdigit()] == [str(stop_step)], checkpoints
  assert outputs[0].count("saving step") == 1
  _finish(_start_pair(reserve_port(), data_dir, tmp_path,
                      f"--config.num_train_steps={NUM_STEPS}", "--config.checkpoint_every=1000"))
  _assert_same_run(tmp_path, uninterrupted)
