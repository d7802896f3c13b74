"""Contrastive training of the two-tower model: `train_and_evaluate(config, workdir)`.

The patent's MuLan training: audio windows and text annotations of the same
recording are pulled together, those of different recordings pushed apart,
by a cross-modal contrastive loss with a learned temperature, negatives
taken from the whole global batch across devices. Reads top to bottom:
mesh, input, model and optimizer, sharding and state, update step,
checkpoint, evals, loop.

Resuming is exact: a run restarted in the same workdir restores parameters,
optimizer state, step and the input iterators' positions from the latest
checkpoint, and every random draw depends only on (seed, step), so it
continues with the same batches, masks and dropout as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from typing import Any

import flax
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jplaylist import checkpoint as checkpoint_lib
from jplaylist import inference
from jplaylist import losses
from jplaylist import sharding as sharding_lib
from jplaylist.data import pipeline
from jplaylist.evaluators import suite as eval_suite
from jplaylist.models import ast as ast_lib
from jplaylist.models import bert as bert_lib
from jplaylist.models import two_tower
from jplaylist.trainers import grad_cache
from jplaylist.trainers import optimizer as optimizer_lib
from jplaylist.trainers import preemption
from jplaylist.trainers import summary


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


class NonFiniteError(RuntimeError):
  """Too many consecutive steps with a non-finite loss or gradient."""


def _dataset_path(config: ml_collections.ConfigDict) -> str:
  return os.path.join(config.input.data_dir, "music_text", config.input.dataset, "1.0.0")


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


def make_loaders(config: ml_collections.ConfigDict, split: str, *, train: bool):
  """This host's input loaders: one per input shard it owns (`host_shards`);
  a host concatenates its shards' batches."""
  shards, num_shards = host_shards(config)
  options = pipeline.PipelineOptions(
      batch_size=config.input.batch_size // num_shards, seed=config.seed,
      window_seconds=config.input.window_seconds,
      max_text_length=config.input.max_text_length,
      source_weights=dict(config.input.source_weights), shuffle=train,
      num_epochs=None if train else 1, worker_count=config.input.worker_count,
      shard_count=num_shards, vocab_path=config.input.get("vocab_path"))
  return [pipeline.make_loader(_dataset_path(config), split,
                               dataclasses.replace(options, shard_index=shard))
          for shard in shards]


def _next_host_batch(iterators) -> dict[str, np.ndarray]:
  parts = [next(it) for it in iterators]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def initial_variables(model: two_tower.Model, config: ml_collections.ConfigDict,
                      rng: jax.Array) -> dict[str, Any]:
  """Model variables, plus the SigLIP bias when the loss needs one."""
  variables = dict(two_tower.init(model, rng))
  params = dict(variables["params"])
  if config.loss.kind == "siglip":
    params["loss_bias"] = jnp.asarray(config.loss.initial_bias, jnp.float32)
  return {"params": params, "batch_stats": variables.get("batch_stats", {})}


def warm_start(params: dict[str, Any], config: ml_collections.ConfigDict,
               log=print) -> dict[str, Any]:
  """Replaces towers with outside weights as `config.warm_start` asks.

  Fields (empty = none): text_bert (Hugging Face BERT folder or file, or
  "minilm" for the packaged all-MiniLM-L6-v2), audio_ast (Hugging Face AST
  checkpoint), text_workdir / audio_workdir (another jplaylist run: its
  latest checkpoint's tower).
  """
  spec = config.get("warm_start") or {}
  params = dict(params)
  if spec.get("text_bert"):
    path = bert_lib.default_minilm_path() if spec.text_bert == "minilm" else spec.text_bert
    params["text"], report = bert_lib.load(params["text"], path)
    log(f"text tower warm-started from {report['source']} "
        f"({len(report['loaded'])} tensors; ignored {report['ignored']})")
  if spec.get("audio_ast"):
    params["audio"], report = ast_lib.load(params["audio"], spec.audio_ast)
    log(f"audio tower warm-started from {spec.audio_ast} "
        f"({len(report['loaded'])} tensors; resized {report['resized']})")
  for tower in ("text", "audio"):
    workdir = spec.get(f"{tower}_workdir")
    if workdir:
      other = checkpoint_lib.restore_params(workdir)[tower]
      jax.tree_util.tree_map(_check_same_shape, params[tower], other)
      params[tower] = jax.tree_util.tree_map(jnp.asarray, other)
      log(f"{tower} tower warm-started from {workdir}")
  return params


def init_train_state(model: two_tower.Model, config: ml_collections.ConfigDict,
                     optimizer: optax.GradientTransformation, rng: jax.Array) -> TrainState:
  variables = initial_variables(model, config, rng)
  return TrainState(step=jnp.zeros([], jnp.int32), params=variables["params"],
                    batch_stats=variables["batch_stats"],
                    opt_state=optimizer.init(variables["params"]))


def _check_same_shape(new, old):
  if np.shape(new) != np.shape(old):
    raise ValueError(f"warm start: shape {np.shape(old)} does not fit {np.shape(new)}")


def _put(tree, shardings):
  """Host values (the same on every process) -> global arrays with `shardings`.

  device_put cannot target devices of other processes; a jitted identity can.
  """
  return jax.jit(lambda x: x, out_shardings=shardings)(tree)


LOSS_IMPLEMENTATIONS = ("plain", "chunked", "gather", "ring")


def make_loss(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
  """(za, zt, temperature, bias, text_key) -> (loss, metrics) as `config.loss` asks.

  `config.loss.implementation`: "plain" and "chunked" (column chunks of
  `chunk_size`) take the global arrays and leave the partitioning to XLA;
  "gather" and "ring" run per device in `shard_map` over the mesh's first
  axis, "ring" in chunks of `chunk_size` texts when it is set (0: whole
  blocks).
  """
  implementation = config.loss.implementation
  chunk_size = config.loss.get("chunk_size", 0) or None
  if implementation not in LOSS_IMPLEMENTATIONS:
    raise ValueError(f"config.loss.implementation={implementation!r}; known: "
                     f"{', '.join(LOSS_IMPLEMENTATIONS)}")
  if implementation == "chunked" and not chunk_size:
    raise ValueError("config.loss.implementation='chunked' needs config.loss.chunk_size > 0")
  if chunk_size and implementation not in ("chunked", "ring"):
    raise ValueError(f"config.loss.chunk_size={chunk_size} applies to implementation "
                     f"'chunked' or 'ring', not {implementation!r}; set it to 0")
  if implementation in ("plain", "chunked"):
    options = (dict(implementation="chunked", chunk_size=chunk_size)
               if implementation == "chunked" else {})
    return lambda za, zt, t, b, key=None: losses.contrastive_loss(  # noqa: E731
        za=za, zt=zt, temperature=t, bias=b, kind=config.loss.kind, text_key=key,
        **options)
  return losses.make_sharded_loss(mesh, data_axis=mesh.axis_names[0],
                                  kind=config.loss.kind, implementation=implementation,
                                  chunk_size=chunk_size)


def make_step_functions(config: ml_collections.ConfigDict, model: two_tower.Model,
                        optimizer: optax.GradientTransformation,
                        schedule: optax.Schedule, mesh: jax.sharding.Mesh):
  """The pure (unjitted) forward and update functions of a training step.

  With `config.optimizer.gradient_cache_microbatches` = K > 1, update takes
  the gradient of the whole batch's loss K micro-batches at a time
  (trainers/grad_cache.py): exact in the loss, towers' memory of B / K.

  Returns:
    forward(params, batch_stats, batch, rng, train) -> (loss, (metrics, batch_stats))
    update(state, batch, rng) -> (state, metrics); rng is folded with the step.
  """
  compute_loss = make_loss(config, mesh)
  accumulation = max(1, config.optimizer.get("accumulation_steps", 1))
  microbatches = max(1, config.optimizer.get("gradient_cache_microbatches", 0))
  if microbatches > 1 and accumulation > 1:
    raise ValueError(
        f"config.optimizer.gradient_cache_microbatches={microbatches} and "
        f"accumulation_steps={accumulation} are both on; choose one. Gradient caching "
        "takes negatives from the whole batch; accumulation only from each micro-batch")

  def temperature_of(params):
    t = two_tower.temperature_from_raw(params["temperature_raw"])
    return jnp.clip(t, config.loss.temperature_min, config.loss.temperature_max)

  def embed(params, batch_stats, batch, rng, train):
    """((za, zt), batch_stats) of a batch; batch_stats updated in training."""
    variables = {"params": {k: v for k, v in params.items() if k != "loss_bias"}}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    specaugment_rng, dropout_rng = jax.random.split(rng)
    mutable = ["batch_stats"] if (train and batch_stats) else False
    outputs = model.apply(
        variables, batch["audio"], batch["text_ids"], batch["text_mask"],
        batch.get("audio_length"), train=train,
        rngs={"specaugment": specaugment_rng, "dropout": dropout_rng}, mutable=mutable)
    (za, zt, _), new_state = outputs if mutable else (outputs, {})
    return (za, zt), new_state.get("batch_stats", batch_stats)

  def loss_of_embeddings(params, embeddings, batch):
    # The duplicate-text keys come from the whole batch, so gradient caching
    # masks the same pairs as the one-pass step.
    za, zt = embeddings
    text_key = (losses.text_identity_key(batch["text_ids"], batch["text_mask"])
                if config.loss.get("mask_duplicate_texts", False) else None)
    return compute_loss(za, zt, temperature_of(params), params.get("loss_bias"), text_key)

  def forward(params, batch_stats, batch, rng, train):
    embeddings, batch_stats = embed(params, batch_stats, batch, rng, train)
    loss, metrics = loss_of_embeddings(params, embeddings, batch)
    return loss, (metrics, batch_stats)

  def value_and_grad(params, batch_stats, batch, rng):
    if microbatches > 1:
      return grad_cache.value_and_grad(
          lambda p, micro_batch, r: embed(p, batch_stats, micro_batch, r, True),
          loss_of_embeddings, params, batch, rng, num_microbatches=microbatches,
          mesh=mesh, data_axis=mesh.axis_names[0])
    return jax.value_and_grad(forward, has_aux=True)(params, batch_stats, batch, rng, True)

  def update(state: TrainState, batch, rng):
    step_rng = jax.random.fold_in(rng, state.step)
    (loss, (metrics, batch_stats)), grads = value_and_grad(state.params, state.batch_stats,
                                                           batch, step_rng)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats,
                     opt_state=opt_state)
    # A non-finite step is not applied: everything but the step stays as it was.
    kept = jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new,
                                  state.replace(step=state.step + 1))
    metrics = dict(metrics, grad_norm=grad_norm, param_norm=optax.tree.norm(state.params),
                   learning_rate=schedule(state.step // accumulation),
                   nonfinite=1.0 - finite.astype(jnp.float32))
    return kept, metrics

  return forward, update


def make_optimizer(config: ml_collections.ConfigDict):
  """The optimizer and schedule; frozen text-encoder parts never train."""
  return optimizer_lib.make(
      config.optimizer, frozen=two_tower.frozen_patterns(config.model),
      learning_rate_scales=(("^text/", config.optimizer.get("text_learning_rate_scale",
                                                            1.0)),))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: tuple[str, ...] = ()) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`; returns the last train and eval metrics.

  A resume refuses a config that changes the run against the saved one
  (checkpoint.check_config_change), except fields in
  checkpoint.RESUME_MAY_CHANGE and `allow_config_change` (dotted paths).
  A SIGTERM or SIGINT to any process stops every process after the same
  step, which is saved ("preempted" in the result).
  """
  os.makedirs(workdir, exist_ok=True)

  # ----------------------------------------------------------------- mesh ----
  mesh = sharding_lib.make_mesh(tuple(tuple(a) for a in config.mesh))
  data_axis = mesh.axis_names[0]
  global_batch = config.input.batch_size
  if global_batch % mesh.shape[data_axis]:
    raise ValueError(f"batch_size {global_batch} is not divisible by the "
                     f"{mesh.shape[data_axis]} devices on axis {data_axis!r}")

  # ---------------------------------------------------------------- input ----
  train_iterators = [iter(loader) for loader in make_loaders(config, "train", train=True)]
  # Their iterator states are checkpointed per shard.
  shards, num_shards = host_shards(config)

  # --------------------------------------------------- model and optimizer ----
  model = two_tower.build(config)
  optimizer, schedule = make_optimizer(config)

  init_state = functools.partial(init_train_state, model, config, optimizer)

  # ------------------------------------------------------ sharding, state ----
  rng = jax.random.key(config.seed)
  init_rng, train_rng = jax.random.split(rng)
  abstract = jax.eval_shape(init_state, init_rng)
  param_specs = sharding_lib.param_specs(abstract.params, config.get("param_rules", ()))

  def state_specs(state):
    # Optimizer moments follow their parameters; counters are replicated.
    return TrainState(
        step=jax.sharding.PartitionSpec(), params=param_specs,
        batch_stats=jax.tree_util.tree_map(lambda _: jax.sharding.PartitionSpec(),
                                           state.batch_stats),
        opt_state=optax.tree_map_params(
            optimizer, lambda _, spec: spec, state.opt_state, param_specs,
            transform_non_params=lambda _: jax.sharding.PartitionSpec(),
            is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)))

  state_shardings = sharding_lib.shardings(mesh, state_specs(abstract))
  abstract = jax.tree_util.tree_map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract,
      state_shardings)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  train_rng = _put(train_rng, replicated)
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
    state = jax.jit(init_state, out_shardings=state_shardings)(init_rng)
    params = warm_start(state.params, config, log=writer.message)
    state = state.replace(params=_put(params, state_shardings.params))
  first_step = int(state.step)
  writer.start_at(first_step)

  # ---------------------------------------------------------- update step ----
  forward, update = make_step_functions(config, model, optimizer, schedule, mesh)

  update = jax.jit(update, in_shardings=(state_shardings, batch_sharding, replicated),
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
  @functools.partial(jax.jit, in_shardings=(state_shardings, batch_sharding),
                     out_shardings=replicated)
  def eval_step(state, batch):
    loss, (metrics, _) = forward(state.params, state.batch_stats, batch,
                                 jax.random.key(0), False)
    del loss
    return metrics

  def evaluate(step):
    if not config.eval_every:
      return {}
    iterators = [iter(l) for l in make_loaders(config, config.input.eval_split, train=False)]
    totals, count = {}, 0
    for _ in range(config.eval_batches):
      try:
        host = _next_host_batch(iterators)
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
    results["uniform_logits_loss"] = losses.uniform_logits_loss(global_batch, config.loss.kind)
    writer.scalars(step, results, prefix="eval")
    writer.message(f"step {step}: eval loss {results['loss']:.4f} (uniform logits: "
                   f"{results['uniform_logits_loss']:.4f}), accuracy a->t "
                   f"{results['accuracy_audio_to_text']:.3f}")
    return results

  # Zero-shot and retrieval evaluators (config.evals) run on process 0 on a
  # host copy of the parameters; one inference model is kept, so its compiled
  # embedding functions are reused at every interval.
  evaluators = eval_suite.build(config.get("evals"), _dataset_path(config),
                                log=writer.message) if writer.enabled else []
  eval_model = []

  def run_evaluators(step, due):
    if jax.process_count() > 1:
      params, batch_stats = multihost_utils.process_allgather(
          (state.params, state.batch_stats), tiled=True)
    else:
      params, batch_stats = jax.device_get((state.params, state.batch_stats))
    if not due:
      return {}
    variables = {"params": {k: v for k, v in params.items() if k != "loss_bias"}}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    if eval_model:
      eval_model[0].set_variables(variables)
    else:
      eval_model.append(inference.Model(config, variables))
    # Evaluation feeds host data on purpose (waveforms, token ids).
    with jax.transfer_guard("allow"):
      results = eval_suite.run_all(due, eval_model[0], log=writer.message)
    writer.scalars(step, results, prefix="evals")
    # Family means only: per-tag AUCs go to the metrics files, not the log.
    writer.message(f"step {step}: " + eval_suite.training_summary(results))
    return results

  # Every process knows the intervals from the config and takes part in the
  # gather; only process 0 has built evaluators.
  intervals = [int(dict(e).get("every", 0)) for e in dict(config.get("evals") or {}).values()]

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
      host = _next_host_batch(train_iterators)
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
          "preempted": stop.stopped, "stop_reason": stop.reason if stop.stopped else "",
          "uniform_logits_loss": losses.uniform_logits_loss(global_batch, config.loss.kind),
          "ln_batch": math.log(global_batch)}
