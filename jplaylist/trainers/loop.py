"""The training loop every trainer shares: `train(config, workdir, build_task)`.

A trainer (contrastive, classifier, ...) supplies a `Task`: its train state's
initialiser and partition specs, its input loaders, the pure update step and
its evaluations. The loop does the rest, the same way for all of them:

  mesh        `config.mesh`, the global batch checked against the data axis;
  input       per-shard loaders (`host_shards`), one global batch per step;
  state       initialised under `jit` with the state's shardings, or restored
              from the latest checkpoint (with the input iterators' states,
              per shard) after `checkpoint.check_config_change`; a fresh run
              applies the task's warm start;
  step        `update(state, batch, rng)` jitted with shardings and the state
              donated; a step whose metrics say `nonfinite` is counted, and
              `config.max_nonfinite_steps` in a row stop the run
              (`NonFiniteError`); checkpoints only after finite steps;
  preemption  a SIGTERM or SIGINT to any process stops every process after
              the same step, which is saved (`preemption.StopRequest`);
  evals       the task's eval step averaged over `config.eval_batches`
              batches of `config.input.eval_split` every `config.eval_every`
              steps, and its periodic evaluators (`config.evals`) on a host
              copy of the state;
  progress    TensorBoard, metrics.jsonl and a progress bar (`summary.Writer`).

Resuming is exact as long as the task's update draws its randomness from
`fold_in(rng, state.step)`: the loop restores parameters, optimizer state,
step and every input shard's iterator position.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import flax
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jplaylist import checkpoint as checkpoint_lib
from jplaylist import sharding as sharding_lib
from jplaylist.data import builder
from jplaylist.data import pipeline
from jplaylist.trainers import preemption
from jplaylist.trainers import summary

Log = Callable[[str], None]


@flax.struct.dataclass
class TrainState:
  """The state most trainers keep; a task may bring its own pytree with `step`
  and `params` fields and a `replace` method."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def apply_gradients(state, grads, loss, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, accumulation: int = 1, **fields):
  """One optimizer step, applied only when the loss and the gradient are finite.

  Args:
    state: a `TrainState` (or any pytree with step, params, opt_state and
      `replace`).
    grads, loss: the step's gradient and loss.
    optimizer, schedule: the run's; `accumulation`: micro-steps per update
      (the schedule counts updates).
    **fields: other state fields the step sets (e.g. batch_stats).

  Returns:
    (state, metrics): a non-finite step leaves everything but the step as it
    was; metrics grad_norm, param_norm (before the step), learning_rate and
    nonfinite (1.0 for a step not applied).
  """
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  new = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                      opt_state=opt_state, **fields)
  kept = jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new,
                                state.replace(step=state.step + 1))
  return kept, dict(grad_norm=grad_norm, param_norm=optax.tree.norm(state.params),
                    learning_rate=schedule(state.step // accumulation),
                    nonfinite=1.0 - finite.astype(jnp.float32))


class NonFiniteError(RuntimeError):
  """Too many consecutive steps with a non-finite loss or gradient."""


@dataclasses.dataclass(frozen=True)
class PeriodicEvaluators:
  """Evaluators run every `every` steps on a host copy of the state.

  Attributes:
    intervals: every evaluator's `every` (0: never in training); every
      process knows them from the config, since all take part in the gather.
    build: log -> evaluators, each with `every` and `due(step)`; called on
      process 0 only (it may load data).
    variables: state -> the pytree the evaluators need, gathered to the host.
    run: (host variables, due evaluators, log) -> {name: value}; process 0.
    summary: results -> one line for the log.
  """

  intervals: Sequence[int]
  build: Callable[[Log], list]
  variables: Callable[[Any], Any]
  run: Callable[[Any, list, Log], dict[str, float]]
  summary: Callable[[dict[str, float]], str]


@dataclasses.dataclass(frozen=True)
class Task:
  """What a trainer supplies to `train`.

  Attributes:
    init_state: rng -> the initial train state (pure; jitted with the
      state's shardings). The state has `step` and `params` fields.
    state_specs: abstract state -> its PartitionSpec tree.
    update: (state, batch, rng) -> (state, metrics), pure and unjitted; the
      metrics hold scalar `loss` and `nonfinite` (1.0 when the step was not
      applied). Draw randomness from `fold_in(rng, state.step)`.
    make_loaders: (split, train) -> this host's loaders, one per input shard
      it owns (`host_shards`); iterators support get_state / set_state.
    next_batch: this host's iterators -> one host batch (numpy dict).
    warm_start: (params, log) -> params, applied once to a fresh run.
    eval_step: (state, batch) -> metrics, pure; None: no held-out loss.
    eval_report: (averaged eval metrics) -> (metrics to log, a message
      without its "step N: " prefix).
    evaluators: periodic evaluators, or None.
  """

  init_state: Callable[[jax.Array], Any]
  state_specs: Callable[[Any], Any]
  update: Callable[[Any, Any, jax.Array], tuple[Any, dict]]
  make_loaders: Callable[[str, bool], list]
  next_batch: Callable[[list], dict[str, np.ndarray]]
  warm_start: Callable[[Any, Log], Any] | None = None
  eval_step: Callable[[Any, Any], dict] | None = None
  eval_report: Callable[[dict], tuple[dict, str]] | None = None
  evaluators: PeriodicEvaluators | None = None


def host_shards(config: ml_collections.ConfigDict) -> tuple[list[int], int]:
  """(the input shards this process reads, the number of shards in all).

  The global batch is split into `num_shards` shards (default: one per
  process) of batch_size / num_shards examples each; process p reads a
  contiguous run of num_shards / processes of them. Decoupling shards from
  processes lets one process reproduce the exact global batches of a
  multi-host run; checkpoints keep each shard's iterator state.
  """
  num_shards = config.input.get("num_shards") or jax.process_count()
  if num_shards % jax.process_count() or config.input.batch_size % num_shards:
    raise ValueError(f"input.num_shards={num_shards} must be a multiple of the "
                     f"{jax.process_count()} processes and divide batch_size "
                     f"{config.input.batch_size}")
  per_host = num_shards // jax.process_count()
  return [jax.process_index() * per_host + i for i in range(per_host)], num_shards


def shard_loaders(config: ml_collections.ConfigDict, split: str, train: bool,
                  make_loader: Callable[[str, str, pipeline.PipelineOptions], Any],
                  **options) -> list:
  """This host's loaders, one per input shard it owns (`host_shards`).

  Each is `make_loader(dataset_path, split, options)` with the run's
  `pipeline.PipelineOptions` for that shard: batch_size / num_shards examples,
  the run's seed, window and workers; shuffled and endless in training, one
  ordered pass otherwise; `options` sets other fields (texts, say).
  """
  shards, num_shards = host_shards(config)
  base = pipeline.PipelineOptions(
      batch_size=config.input.batch_size // num_shards, seed=config.seed,
      window_seconds=config.input.window_seconds, shuffle=train,
      num_epochs=None if train else 1, worker_count=config.input.worker_count,
      shard_count=num_shards, **options)
  path = builder.dataset_path(config.input.data_dir, config.input.dataset)
  return [make_loader(path, split, dataclasses.replace(base, shard_index=shard))
          for shard in shards]


def next_host_batch(iterators) -> dict[str, np.ndarray]:
  """One batch of every iterator (this host's shards), concatenated."""
  parts = [next(it) for it in iterators]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def put(tree, shardings):
  """Host values (the same on every process) -> global arrays with `shardings`.

  device_put cannot target devices of other processes; a jitted identity can.
  """
  return jax.jit(lambda x: x, out_shardings=shardings)(tree)


def train_state_specs(optimizer: optax.GradientTransformation,
                      param_rules: Sequence = ()) -> Callable[[TrainState], TrainState]:
  """`Task.state_specs` of a `TrainState`: parameters by `param_rules`
  (`sharding.param_specs`), optimizer moments following their parameters,
  counters and BatchNorm statistics replicated."""
  def state_specs(state: TrainState) -> TrainState:
    param_specs = sharding_lib.param_specs(state.params, param_rules)
    return TrainState(
        step=jax.sharding.PartitionSpec(), params=param_specs,
        batch_stats=jax.tree_util.tree_map(lambda _: jax.sharding.PartitionSpec(),
                                           state.batch_stats),
        opt_state=optax.tree_map_params(
            optimizer, lambda _, spec: spec, state.opt_state, param_specs,
            transform_non_params=lambda _: jax.sharding.PartitionSpec(),
            is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)))
  return state_specs


def train(config: ml_collections.ConfigDict, workdir: str,
          build_task: Callable[[jax.sharding.Mesh], Task], *,
          allow_config_change: tuple[str, ...] = ()) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`; returns the last train and eval metrics.

  A resume refuses a config that changes the run against the saved one
  (checkpoint.check_config_change), except fields in
  checkpoint.RESUME_MAY_CHANGE and `allow_config_change` (dotted paths).
  A SIGTERM or SIGINT to any process stops every process after the same
  step, which is saved ("preempted" in the result).

  Args:
    config: the experiment config; the loop reads mesh, seed, input
      (batch_size, num_shards, eval_split), num_train_steps, log_every,
      checkpoint_every, keep_checkpoints, eval_every, eval_batches, evals,
      max_nonfinite_steps and preemption_check_every.
    workdir: checkpoints, TensorBoard logs, metrics.jsonl.
    build_task: mesh -> the trainer's Task.
    allow_config_change: config fields a resume may change.

  Returns:
    {"train": last logged train metrics, "eval": last eval metrics, "evals":
    last evaluator results, "step", "preempted", "stop_reason"}.
  """
  os.makedirs(workdir, exist_ok=True)

  # ----------------------------------------------------------------- mesh ----
  mesh = sharding_lib.make_mesh(tuple(tuple(a) for a in config.mesh))
  data_axis = mesh.axis_names[0]
  global_batch = config.input.batch_size
  if global_batch % mesh.shape[data_axis]:
    raise ValueError(f"batch_size {global_batch} is not divisible by the "
                     f"{mesh.shape[data_axis]} devices on axis {data_axis!r}")
  task = build_task(mesh)

  # ---------------------------------------------------------------- input ----
  train_iterators = [iter(loader) for loader in task.make_loaders("train", True)]
  # Their iterator states are checkpointed per shard.
  shards, num_shards = host_shards(config)

  # ------------------------------------------------------ sharding, state ----
  rng = jax.random.key(config.seed)
  init_rng, train_rng = jax.random.split(rng)
  abstract = jax.eval_shape(task.init_state, init_rng)
  state_shardings = sharding_lib.shardings(mesh, task.state_specs(abstract))
  abstract = jax.tree_util.tree_map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract,
      state_shardings)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  train_rng = put(train_rng, replicated)
  batch_sharding = sharding_lib.batch_sharding(mesh, data_axis)

  checkpointer = checkpoint_lib.Checkpointer(
      workdir, max_to_keep=config.keep_checkpoints,
      save_interval_steps=config.checkpoint_every)
  allowed_changes = []
  if checkpointer.latest_step() is not None and checkpointer.saved_config() is not None:
    try:
      allowed_changes = checkpoint_lib.check_config_change(
          checkpointer.saved_config(), config, allow=allow_config_change,
          where=f"step {checkpointer.latest_step()} in {checkpointer.directory}")
    except checkpoint_lib.ConfigChangedError:
      checkpointer.close()
      raise
  writer = summary.Writer(workdir, config.num_train_steps)
  for path, old, new in allowed_changes:
    writer.message(f"resuming with {path}: {old!r} -> {new!r}")
  if checkpointer.latest_step() is not None:
    try:
      state, input_states, _ = checkpointer.restore(abstract, shards, num_shards)
    except ValueError as e:
      raise ValueError(
          f"the checkpoint in {checkpointer.directory} does not fit this config "
          f"(a different model or optimizer?); use a new workdir or the config "
          f"saved with it. Orbax said: {str(e)[:500]}") from e
    for iterator, saved in zip(train_iterators, input_states, strict=True):
      iterator.set_state(saved)
    writer.message(f"resumed from step {int(state.step)} in {checkpointer.directory}")
  else:
    state = jax.jit(task.init_state, out_shardings=state_shardings)(init_rng)
    if task.warm_start is not None:
      params = task.warm_start(state.params, writer.message)
      state = state.replace(params=put(params, state_shardings.params))
  first_step = int(state.step)
  writer.start_at(first_step)

  # ---------------------------------------------------------- update step ----
  update = jax.jit(task.update, in_shardings=(state_shardings, batch_sharding, replicated),
                   out_shardings=(state_shardings, replicated), donate_argnums=0)

  # ----------------------------------------------------------- checkpoint ----
  # A signal to any process stops all of them after the same step.
  stop = preemption.StopRequest(
      check_every=config.get("preemption_check_every", 1)).install()

  def save(step, force=False):
    return checkpointer.save(
        step, state, {s: it.get_state() for s, it in zip(shards, train_iterators)},
        num_shards, config, force=force)

  # ---------------------------------------------------------------- evals ----
  eval_step = None
  if task.eval_step is not None:
    eval_step = jax.jit(task.eval_step, in_shardings=(state_shardings, batch_sharding),
                        out_shardings=replicated)

  def evaluate(step):
    if not config.eval_every or eval_step is None:
      return {}
    iterators = [iter(l) for l in task.make_loaders(config.input.eval_split, False)]
    totals, count = {}, 0
    for _ in range(config.eval_batches):
      try:
        host = task.next_batch(iterators)
      except StopIteration:
        break
      metrics = jax.device_get(eval_step(state, sharding_lib.host_batch_to_global(
          host, mesh, data_axis)))
      for k, v in metrics.items():
        totals[k] = totals.get(k, 0.0) + float(v)
      count += 1
    if not count:
      writer.message(f"eval: split {config.input.eval_split!r} has fewer than "
                     f"{global_batch} examples; skipped")
      return {}
    results = {k: v / count for k, v in totals.items()}
    message = f"eval loss {results['loss']:.4f}"
    if task.eval_report is not None:
      results, message = task.eval_report(results)
    writer.scalars(step, results, prefix="eval")
    writer.message(f"step {step}: {message}")
    return results

  # Periodic evaluators run on process 0 on a host copy of the state; the
  # task keeps whatever it compiles between calls.
  periodic = task.evaluators
  evaluators = periodic.build(writer.message) if (periodic and writer.enabled) else []
  # Every process knows the intervals from the config and takes part in the
  # gather; only process 0 has built evaluators.
  intervals = list(periodic.intervals) if periodic else []

  def run_evaluators(step, due):
    variables = periodic.variables(state)
    if jax.process_count() > 1:
      variables = multihost_utils.process_allgather(variables, tiled=True)
    else:
      variables = jax.device_get(variables)
    if not due:
      return {}
    results = periodic.run(variables, due, writer.message)
    writer.scalars(step, results, prefix="evals")
    writer.message(f"step {step}: " + periodic.summary(results))
    return results

  def maybe_run_evaluators(step, final=False):
    if not any(every and (final or step % every == 0) for every in intervals):
      return {}
    return run_evaluators(step, [e for e in evaluators if e.due(step) or (final and e.every)])

  # ----------------------------------------------------------------- loop ----
  last_train, last_eval, last_evals = {}, {}, {}
  consecutive_nonfinite, nonfinite_total = 0, 0
  wait_time, window_start, window_steps = 0.0, time.perf_counter(), 0
  step = first_step
  try:
    while step < config.num_train_steps:
      wait_start = time.perf_counter()
      host = task.next_batch(train_iterators)
      batch = sharding_lib.host_batch_to_global(host, mesh, data_axis)
      wait_time += time.perf_counter() - wait_start
      if step == first_step and jax.process_count() > 1:
        # Compile before the first collective, then meet: otherwise one host
        # may wait for another's compilation longer than the collectives'
        # connection timeout.
        update = update.lower(state, batch, train_rng).compile()
        multihost_utils.sync_global_devices("jplaylist: train step compiled")
      state, metrics = update(state, batch, train_rng)
      step += 1
      window_steps += 1
      if step % config.log_every == 0 or step == config.num_train_steps:
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        elapsed = time.perf_counter() - window_start
        metrics["examples_per_second"] = window_steps * global_batch / elapsed
        metrics["data_wait_fraction"] = wait_time / elapsed
        last_train = metrics
        writer.scalars(step, metrics)
        wait_time, window_start, window_steps = 0.0, time.perf_counter(), 0
      else:
        metrics = {"nonfinite": float(metrics["nonfinite"]), "loss": metrics["loss"]}
      if metrics["nonfinite"]:
        consecutive_nonfinite += 1
        nonfinite_total += 1
        writer.message(f"step {step}: non-finite loss or gradient, update skipped "
                       f"({consecutive_nonfinite} in a row, {nonfinite_total} in all)")
        if consecutive_nonfinite >= config.max_nonfinite_steps:
          raise NonFiniteError(
              f"{consecutive_nonfinite} consecutive steps had a non-finite loss or "
              f"gradient (up to step {step}); stopping. The last good checkpoint "
              f"is step {checkpointer.latest_step()} in {checkpointer.directory}; "
              f"lower the learning rate or check the input data.")
      else:
        consecutive_nonfinite = 0
        save(step)  # the manager saves only on its interval
      writer.advance(1, {"loss": float(metrics["loss"])} if step % config.log_every == 0
                     else None)
      if config.eval_every and step % config.eval_every == 0:
        last_eval = evaluate(step)
      last_evals = maybe_run_evaluators(step) or last_evals
      if stop.should_stop(step):
        break
    if stop.stopped:
      writer.message(f"{stop.reason}: saving step {step} and stopping")
      if not consecutive_nonfinite:
        save(step, force=True)
    elif checkpointer.latest_step() != step and not consecutive_nonfinite:
      save(step, force=True)
    if config.eval_every and step == config.num_train_steps and not last_eval:
      last_eval = evaluate(step)
    # Decided from the config, the same on every process (all gather).
    if step == config.num_train_steps and step != first_step and not any(
        every and step % every == 0 for every in intervals):
      last_evals = maybe_run_evaluators(step, final=True) or last_evals
  finally:
    checkpointer.close()
    writer.close()
    stop.uninstall()
  return {"train": last_train, "eval": last_eval, "evals": last_evals, "step": step,
          "preempted": stop.stopped, "stop_reason": stop.reason if stop.stopped else ""}
