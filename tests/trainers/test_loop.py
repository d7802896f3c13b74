"""The shared training loop on a toy task (linear regression, no dataset): exact
resume, preemption by a signal, non-finite steps, held-out evals and periodic
evaluators, each against a plain numpy computation of the same run."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jplaylist import checkpoint as checkpoint_lib
from jplaylist.trainers import loop
from jplaylist.trainers import summary

DIM = 4
BATCH = 8
LEARNING_RATE = 0.1
TRUE_WEIGHTS = np.arange(1.0, DIM + 1.0, dtype=np.float32)


def _batch(split, position):
  """The position-th batch of a split: the same whoever asks, whenever."""
  rng = np.random.default_rng([0 if split == "train" else 1, position])
  x = rng.normal(size=(BATCH, DIM)).astype(np.float32)
  return {"x": x, "y": x @ TRUE_WEIGHTS}


class _Iterator:
  def __init__(self, split, num_batches):
    self.split, self.num_batches, self.position = split, num_batches, 0

  def __next__(self):
    if self.num_batches is not None and self.position >= self.num_batches:
      raise StopIteration
    self.position += 1
    return _batch(self.split, self.position - 1)

  def get_state(self):
    return json.dumps({"position": self.position}).encode()

  def set_state(self, state):
    self.position = json.loads(state)["position"]


class _Loader:
  def __init__(self, split, train):
    self.split, self.num_batches = split, None if train else 3

  def __iter__(self):
    return _Iterator(self.split, self.num_batches)


def _config(**overrides):
  config = ml_collections.ConfigDict(dict(
      seed=0, mesh=(("data", -1),), param_rules=(), num_train_steps=6, log_every=1,
      checkpoint_every=2, keep_checkpoints=3, eval_every=0, eval_batches=2,
      evals=ml_collections.ConfigDict(), max_nonfinite_steps=3, preemption_check_every=1,
      input=dict(batch_size=BATCH, num_shards=0, eval_split="validation")))
  config.update(overrides)
  return config


def _make_task(poison=(), signal_at=None, evaluators=None, warm=None):
  """A Task of plain SGD on (x @ w - y)^2; `poison`: train batches (1-based)
  that get NaN inputs; `signal_at`: the train batch before which this process
  sends itself SIGTERM."""
  optimizer = optax.sgd(LEARNING_RATE)
  drawn = []

  def init_state(rng):
    del rng
    params = {"w": jnp.zeros([DIM], jnp.float32)}
    return loop.TrainState(step=jnp.zeros([], jnp.int32), params=params, batch_stats={},
                           opt_state=optimizer.init(params))

  def loss_fn(params, batch):
    return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)

  def update(state, batch, rng):
    del rng
    loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
    finite = jnp.isfinite(loss)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    new = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                        opt_state=opt_state)
    kept = jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new,
                                  state.replace(step=state.step + 1))
    return kept, {"loss": loss, "nonfinite": 1.0 - finite.astype(jnp.float32)}

  def next_batch(iterators):
    if iterators[0].split == "train":
      drawn.append(1)
      if len(drawn) == signal_at:
        os.kill(os.getpid(), signal.SIGTERM)
    batch = loop.next_host_batch(iterators)
    if iterators[0].split == "train" and len(drawn) in poison:
      batch["x"] = np.full_like(batch["x"], np.nan)
    return batch

  def build(mesh):
    del mesh
    return loop.Task(
        init_state=init_state, state_specs=loop.train_state_specs(optimizer),
        update=update, make_loaders=lambda split, train: [_Loader(split, train)],
        next_batch=next_batch, warm_start=warm,
        eval_step=lambda state, batch: {"loss": loss_fn(state.params, batch)},
        evaluators=evaluators)
  return build


def _numpy_run(steps, skip=()):
  """Weights after `steps` SGD steps in float64 (skipping 1-based steps `skip`)."""
  w = np.zeros(DIM)
  losses = []
  for step in range(steps):
    batch = _batch("train", step)
    residual = batch["x"] @ w - batch["y"]
    losses.append(np.mean(residual ** 2))
    if step + 1 not in skip:
      w = w - LEARNING_RATE * 2 * batch["x"].T @ residual / BATCH
  return w, losses


def _weights(workdir):
  return checkpoint_lib.restore_params(str(workdir))["w"]


def test_a_run_matches_numpy_and_a_two_phase_run_matches_one_run(tmp_path):
  result = loop.train(_config(), str(tmp_path / "one"), _make_task())
  assert result["step"] == 6 and not result["preempted"]
  expected, losses = _numpy_run(6)
  np.testing.assert_allclose(_weights(tmp_path / "one"), expected, rtol=1e-5, atol=1e-5)
  rows = summary.read_metrics(str(tmp_path / "one"))
  np.testing.assert_allclose([r["loss"] for r in rows], losses, rtol=1e-5)
  assert sorted(os.listdir(tmp_path / "one" / "checkpoints")) == ["2", "4", "6"]
  two = str(tmp_path / "two")
  loop.train(_config(num_train_steps=3), two, _make_task())  # off the interval: saved
  result = loop.train(_config(), two, _make_task())
  assert result["step"] == 6
  np.testing.assert_array_equal(_weights(two), _weights(tmp_path / "one"))
  assert [r["step"] for r in summary.read_metrics(two)] == [1, 2, 3, 4, 5, 6]


def test_a_signal_stops_after_the_step_saves_it_and_the_run_resumes_exactly(tmp_path):
  # SIGTERM arrives while the 3rd batch is drawn: step 3 completes and is saved.
  previous = signal.getsignal(signal.SIGTERM)
  result = loop.train(_config(checkpoint_every=100), str(tmp_path), _make_task(signal_at=3))
  assert result["preempted"] and result["step"] == 3
  assert result["stop_reason"] == "signal SIGTERM"
  assert checkpoint_lib.latest_step(str(tmp_path)) == 3
  assert signal.getsignal(signal.SIGTERM) == previous  # the loop put it back
  result = loop.train(_config(checkpoint_every=100), str(tmp_path), _make_task())
  assert result["step"] == 6 and not result["preempted"]
  np.testing.assert_allclose(_weights(tmp_path), _numpy_run(6)[0], rtol=1e-5, atol=1e-5)


def test_nonfinite_steps_are_skipped_and_enough_in_a_row_stop_the_run(tmp_path):
  # One poisoned step is skipped and the run goes on; three in a row stop it.
  result = loop.train(_config(), str(tmp_path / "one"), _make_task(poison=(2,)))
  assert result["step"] == 6
  np.testing.assert_allclose(_weights(tmp_path / "one"), _numpy_run(6, skip=(2,))[0],
                             rtol=1e-5, atol=1e-5)
  assert [r["nonfinite"] for r in summary.read_metrics(str(tmp_path / "one"))] == [
      0, 1, 0, 0, 0, 0]
  with pytest.raises(loop.NonFiniteError, match="3 consecutive steps"):
    loop.train(_config(num_train_steps=20), str(tmp_path / "three"),
               _make_task(poison=(3, 4, 5)))
  # Step 2 was the last finite checkpoint; the skipped steps saved nothing.
  assert checkpoint_lib.latest_step(str(tmp_path / "three")) == 2


def test_held_out_evals_periodic_evaluators_and_warm_start(tmp_path):
  calls = []

  class Evaluator:
    every = 4

    def due(self, step):
      return step % self.every == 0

  def run(variables, due, log):
    del log
    calls.append((len(due), np.array(variables["w"])))
    return {"w0": float(variables["w"][0])}

  evaluators = loop.PeriodicEvaluators(
      intervals=[4], build=lambda log: [Evaluator()],
      variables=lambda state: state.params, run=run, summary=lambda r: f"w0 {r['w0']}")
  warm = lambda params, log: {"w": params["w"] + 1.0}  # noqa: E731
  result = loop.train(_config(eval_every=3), str(tmp_path),
                      _make_task(evaluators=evaluators, warm=warm))
  # Warm start: SGD from w = 1 instead of 0.
  w = np.ones(DIM)
  weights_at = {}
  for step in range(6):
    batch = _batch("train", step)
    w = w - LEARNING_RATE * 2 * batch["x"].T @ (batch["x"] @ w - batch["y"]) / BATCH
    weights_at[step + 1] = w
  np.testing.assert_allclose(_weights(tmp_path), w, rtol=1e-5, atol=1e-5)
  # Evaluators at step 4, and once more at the end (6 is off their interval).
  assert [c[0] for c in calls] == [1, 1]
  np.testing.assert_allclose(calls[0][1], weights_at[4], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(calls[1][1], weights_at[6], rtol=1e-5, atol=1e-5)
  assert result["evals"] == {"w0": pytest.approx(weights_at[6][0], rel=1e-5)}
  # Held-out loss: the mean over eval_batches=2 batches of the eval split.
  evals = summary.read_metrics(str(tmp_path), split="eval")
  assert [r["step"] for r in evals] == [3, 6]
  for row in evals:
    expected = np.mean([np.mean((b["x"] @ weights_at[row["step"]] - b["y"]) ** 2)
                        for b in (_batch("validation", i) for i in range(2))])
    np.testing.assert_allclose(row["loss"], expected, rtol=1e-4)
  assert result["eval"]["loss"] == pytest.approx(evals[-1]["loss"])
