"""Contrastive training of the two-tower model: `train_and_evaluate(config, workdir)`.

The patent's MuLan training: audio windows and text annotations of the same
recording are pulled together, those of different recordings pushed apart,
by a cross-modal contrastive loss with a learned temperature, negatives
taken from the whole global batch across devices. This file holds what is
the contrastive method's own: input, model and optimizer, warm starts, the
loss and the update step, and its evaluations; the shared loop
(`trainers/loop.py`) does mesh, sharding, checkpoints and exact resume,
preemption, non-finite steps and progress.

Resuming is exact: a run restarted in the same workdir restores parameters,
optimizer state, step and the input iterators' positions from the latest
checkpoint, and every random draw depends only on (seed, step), so it
continues with the same batches, masks and dropout as an uninterrupted run.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jplaylist import checkpoint as checkpoint_lib
from jplaylist import inference
from jplaylist import losses
from jplaylist.data import builder
from jplaylist.data import pipeline
from jplaylist.evaluators import suite as eval_suite
from jplaylist.models import ast as ast_lib
from jplaylist.models import bert as bert_lib
from jplaylist.models import two_tower
from jplaylist.trainers import grad_cache
from jplaylist.trainers import loop
from jplaylist.trainers import optimizer as optimizer_lib

# Shared with every trainer (trainers/loop.py); kept here under their old
# names. `make_task` reads `_next_host_batch` from this module, so a test can
# replace it here.
TrainState = loop.TrainState
NonFiniteError = loop.NonFiniteError
host_shards = loop.host_shards
_next_host_batch = loop.next_host_batch


def _dataset_path(config: ml_collections.ConfigDict) -> str:
  return builder.dataset_path(config.input.data_dir, config.input.dataset)


def make_loaders(config: ml_collections.ConfigDict, split: str, *, train: bool):
  """This host's input loaders: one per input shard it owns (`host_shards`);
  a host concatenates its shards' batches."""
  return loop.shard_loaders(config, split, train, pipeline.make_loader,
                            max_text_length=config.input.max_text_length,
                            source_weights=dict(config.input.source_weights),
                            vocab_path=config.input.get("vocab_path"))


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
      # A text teacher is this run's own (set below), whether or not the
      # other run had one.
      other = {k: v for k, v in checkpoint_lib.restore_params(workdir)[tower].items()
               if k != "teacher"}
      mine = {k: v for k, v in params[tower].items() if k != "teacher"}
      if jax.tree_util.tree_structure(mine) != jax.tree_util.tree_structure(other):
        raise ValueError(f"warm start: the {tower} tower of {workdir} is not this "
                         f"config's {tower} tower (parameter trees differ)")
      jax.tree_util.tree_map(_check_same_shape, mine, other)
      params[tower] = dict(params[tower], **jax.tree_util.tree_map(jnp.asarray, other))
      log(f"{tower} tower warm-started from {workdir}")
  # A text teacher is the encoder the run starts from, warm-started or not.
  params["text"] = bert_lib.copy_to_teacher(params["text"])
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

  distill_weight = float(config.loss.get("text_distill_weight", 0.0))
  if distill_weight < 0:
    raise ValueError(f"config.loss.text_distill_weight={distill_weight} must be >= 0")
  if distill_weight and not config.model.get("text_teacher", False):
    raise ValueError(f"config.loss.text_distill_weight={distill_weight} needs "
                     "config.model.text_teacher=True (the frozen copy it distils from)")
  if distill_weight and microbatches > 1:
    raise ValueError("config.loss.text_distill_weight and "
                     "config.optimizer.gradient_cache_microbatches are both on; the "
                     "distillation term is not gradient-cached yet, choose one")

  def temperature_of(params):
    t = two_tower.temperature_from_raw(params["temperature_raw"])
    return jnp.clip(t, config.loss.temperature_min, config.loss.temperature_max)

  def embed(params, batch_stats, batch, rng, train):
    """((za, zt), batch_stats) of a batch; batch_stats updated in training."""
    variables = {"params": {k: v for k, v in params.items() if k != "loss_bias"}}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    specaugment_rng, dropout_rng = jax.random.split(rng)
    mutable = (["batch_stats"] if (train and batch_stats) else []) + (
        ["intermediates"] if distill_weight else [])
    outputs = model.apply(
        variables, batch["audio"], batch["text_ids"], batch["text_mask"],
        batch.get("audio_length"), train=train,
        rngs={"specaugment": specaugment_rng, "dropout": dropout_rng},
        mutable=mutable or False)
    (za, zt, _), new_state = outputs if mutable else (outputs, {})
    embeddings = (za, zt)
    if distill_weight:
      embeddings += (new_state["intermediates"]["text"]["teacher_embedding"][0],)
    return embeddings, new_state.get("batch_stats", batch_stats)

  def loss_of_embeddings(params, embeddings, batch):
    # The duplicate-text keys come from the whole batch, so gradient caching
    # masks the same pairs as the one-pass step.
    za, zt = embeddings[:2]
    text_key = (losses.text_identity_key(batch["text_ids"], batch["text_mask"])
                if config.loss.get("mask_duplicate_texts", False) else None)
    loss, metrics = compute_loss(za, zt, temperature_of(params), params.get("loss_bias"),
                                 text_key)
    if distill_weight:
      # On the global [B, d] arrays: XLA gathers the B x B cosines it needs.
      distillation = losses.similarity_distillation(zt, embeddings[2])
      # "loss" stays the objective that is minimised; its parts beside it.
      metrics = dict(metrics, contrastive_loss=loss, text_distillation=distillation)
      loss = loss + distill_weight * distillation
      metrics["loss"] = loss
    return loss, metrics

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
    state, step_metrics = loop.apply_gradients(state, grads, loss, optimizer, schedule,
                                               accumulation, batch_stats=batch_stats)
    return state, dict(metrics, **step_metrics)

  return forward, update


def make_optimizer(config: ml_collections.ConfigDict):
  """The optimizer and schedule; frozen text-encoder parts never train."""
  return optimizer_lib.make(
      config.optimizer, frozen=two_tower.frozen_patterns(config.model),
      learning_rate_scales=(("^text/", config.optimizer.get("text_learning_rate_scale",
                                                            1.0)),))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: tuple[str, ...] = ()) -> dict[str, Any]:
  """`loop.train` with the contrastive task (`make_task`): resume rules, preemption
  and the result as documented there; returns the last train and eval metrics."""
  global_batch = config.input.batch_size
  result = loop.train(config, workdir, functools.partial(make_task, config),
                      allow_config_change=allow_config_change)
  return dict(result,
              uniform_logits_loss=losses.uniform_logits_loss(global_batch, config.loss.kind),
              ln_batch=math.log(global_batch))


def make_task(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> loop.Task:
  """The contrastive method as the shared loop's Task (trainers/loop.py)."""
  # --------------------------------------------------- model and optimizer ----
  model = two_tower.build(config)
  optimizer, schedule = make_optimizer(config)

  # ---------------------------------------------------------- update step ----
  forward, update = make_step_functions(config, model, optimizer, schedule, mesh)

  # ---------------------------------------------------------------- evals ----
  def eval_step(state, batch):
    loss, (metrics, _) = forward(state.params, state.batch_stats, batch,
                                 jax.random.key(0), False)
    del loss
    return metrics

  def eval_report(results):
    results = dict(results, uniform_logits_loss=losses.uniform_logits_loss(
        config.input.batch_size, config.loss.kind))
    # With text distillation "loss" is the whole objective; the uniform-logits
    # figure compares with its contrastive part.
    line = (f"eval contrastive loss {_contrastive_loss(results):.4f} (uniform logits: "
            f"{results['uniform_logits_loss']:.4f}), accuracy a->t "
            f"{results['accuracy_audio_to_text']:.3f}")
    if "text_distillation" in results:
      line += f", text distillation {results['text_distillation']:.5f}"
    return results, line

  # Zero-shot and retrieval evaluators (config.evals) run on process 0 on a
  # host copy of the parameters; one inference model is kept, so its compiled
  # embedding functions are reused at every interval.
  eval_model = []

  def run_evaluators(variables, due, log):
    params, batch_stats = variables
    variables = {"params": {k: v for k, v in params.items() if k != "loss_bias"}}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    if eval_model:
      eval_model[0].set_variables(variables)
    else:
      eval_model.append(inference.Model(config, variables))
    # Evaluation feeds host data on purpose (waveforms, token ids).
    with jax.transfer_guard("allow"):
      return eval_suite.run_all(due, eval_model[0], log=log)

  evaluators = loop.PeriodicEvaluators(
      intervals=[int(dict(e).get("every", 0))
                 for e in dict(config.get("evals") or {}).values()],
      build=lambda log: eval_suite.build(config.get("evals"), _dataset_path(config), log=log),
      variables=lambda state: (state.params, state.batch_stats),
      run=run_evaluators,
      # Family means only: per-tag AUCs go to the metrics files, not the log.
      summary=eval_suite.training_summary)

  return loop.Task(
      init_state=functools.partial(init_train_state, model, config, optimizer),
      state_specs=loop.train_state_specs(optimizer, config.get("param_rules", ())),
      update=update,
      make_loaders=lambda split, train: make_loaders(config, split, train=train),
      next_batch=_next_host_batch,
      warm_start=lambda params, log: warm_start(params, config, log=log),
      eval_step=eval_step, eval_report=eval_report, evaluators=evaluators)


def eval_summary(result: dict[str, Any]) -> str:
  """The launcher's line about a finished run's held-out figures."""
  return (f"Held-out contrastive loss {_contrastive_loss(result['eval']):.4f} "
          f"(uniform logits: {result['uniform_logits_loss']:.4f}); "
          f"audio->text accuracy {result['eval']['accuracy_audio_to_text']:.3f}")


def _contrastive_loss(metrics: dict[str, Any]) -> float:
  """The contrastive part of an eval's loss (all of it without text distillation)."""
  return float(metrics.get("contrastive_loss", metrics["loss"]))
