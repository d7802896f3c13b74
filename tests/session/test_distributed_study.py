"""A study over several processes (jax.distributed) gives one process's records."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jplaylist.session import distributed

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(REPO_ROOT, ".cache", "jax_compilation")


@pytest.mark.parametrize("num_sessions,processes,devices", [
    (16, 1, 8), (13, 1, 8), (3, 1, 8), (14, 2, 2), (7, 3, 4), (1, 2, 2), (100, 4, 3)])
def test_blocks_cover_every_session_once_in_order(num_sessions, processes, devices):
  splits = [distributed.blocks(num_sessions, process_index=p, process_count=processes,
                               local_device_count=devices) for p in range(processes)]
  ids = np.concatenate([s.session_ids for s in splits])
  np.testing.assert_array_equal(ids, np.arange(splits[0].padded_sessions))
  for split in splits:
    assert split.per_process == splits[0].per_process
    assert split.per_process % split.num_devices == 0
    assert 1 <= split.num_devices <= devices
  # Padding is less than one round of every process's devices.
  assert 0 <= splits[0].padded_sessions - num_sessions < processes * splits[0].num_devices
  # The last block's padding repeats the last real session.
  plan = {"x": np.arange(num_sessions) * 10}
  taken = np.concatenate([s.take(plan)["x"] for s in splits])
  np.testing.assert_array_equal(taken, 10 * np.minimum(ids, num_sessions - 1))


def test_bad_splits_are_rejected_with_the_numbers():
  with pytest.raises(ValueError, match="num_sessions=0"):
    distributed.blocks(0, process_index=0, process_count=1, local_device_count=1)
  with pytest.raises(ValueError, match="process_index=2 outside 2 processes"):
    distributed.blocks(4, process_index=2, process_count=2, local_device_count=1)
  split = distributed.blocks(13, process_index=0, process_count=1, local_device_count=8)
  with pytest.raises(ValueError, match=r"record 'track' has shape \(1, 13\)"):
    distributed.gather({"track": np.zeros((1, 13))}, split)


def test_one_process_gather_drops_the_padding():
  split = distributed.blocks(13, process_index=0, process_count=1, local_device_count=8)
  records = {"track": np.arange(2 * 16 * 3).reshape(2, 16, 3),
             "skipped": np.ones((2, 16), bool)}
  out = distributed.gather(records, split)
  np.testing.assert_array_equal(out["track"], records["track"][:, :13])
  assert out["skipped"].shape == (2, 13) and out["skipped"].dtype == bool


def _env(devices):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  env["JAX_COMPILATION_CACHE_DIR"] = CACHE
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  return env


def _command(output_dir):
  # A learner and a baseline under one listener model, untuned and
  # uncalibrated to keep compiles few: 14 held-out sessions split unevenly
  # (padded to 16) either way, with 4 sessions per device in both layouts.
  return [sys.executable, "-m", "launch.simulate",
          "--config=configs/session_study.py:runlocal=True", f"--output_dir={output_dir}",
          "--config.strategies=('knn','initial')", "--config.listener_models=('embedding',)",
          "--config.num_sessions=14", "--config.num_tuning_sessions=0",
          "--config.calibrate=False", "--config.ablations=()",
          "--config.ranking_metrics=False", "--config.num_resamples=20"]


def test_two_processes_give_the_records_of_one(tmp_path, reserve_port):
  """2 CPU processes x 2 devices against 1 process x 4 devices: identical
  per-session records (exact: every device runs the same program on the same
  sessions in both layouts), outputs and progress from process 0 only."""
  port = reserve_port()  # held for the coordinator: see tests/conftest.py
  multi, single = tmp_path / "multi", tmp_path / "single"
  processes = [subprocess.Popen(
      _command(multi) + [f"--coordinator_address=localhost:{port}", "--num_processes=2",
                         f"--process_id={i}"],
      cwd=REPO_ROOT, env=_env(devices=2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]
  try:
    outputs = [p.communicate(timeout=900) for p in processes]
  finally:  # SIGKILL: jax.distributed handles SIGTERM as a preemption notice
    for p in processes:
      if p.poll() is None:
        p.kill()
  assert all(p.returncode == 0 for p in processes), "\n".join(
      out[1][-3000:] for out in outputs)
  done = subprocess.run(_command(single), cwd=REPO_ROOT, env=_env(devices=4),
                        capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]

  leader, follower = outputs[0][0], outputs[1][0]
  assert "14 sessions over 2 process(es) x 2 device(s): 8 per process, 2 padding" in leader
  assert "14 sessions over 1 process(es) x 4 device(s): 16 per process, 2 padding" in (
      done.stdout)
  assert f"Report: {multi}/report.md" in leader
  assert "sessions x 8 events" not in follower and "Report:" not in follower
  found = sorted(os.path.relpath(p, multi) for p in glob.glob(f"{multi}/**/*.npz",
                                                              recursive=True))
  assert found and found == sorted(os.path.relpath(p, single) for p in glob.glob(
      f"{single}/**/*.npz", recursive=True))
  for name in found:
    a, b = np.load(multi / name), np.load(single / name)
    assert sorted(a.files) == sorted(b.files)
    assert list(a["names"]) == ["knn", "initial"]
    assert a["served_prob"].shape == (2, 14, 8)
    for key in a.files:  # NaN (metrics switched off) equals NaN here
      np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")
  summaries = [json.load(open(d / "summary.json"))["models"]["embedding"]
               for d in (multi, single)]
  assert summaries[0]["summary"] == summaries[1]["summary"]
