"""Supervised clip classifier on the shared loop: `train_and_evaluate(config, workdir)`.

Issue 15, item 4: the convolutional-recurrent network with attention over
time (`models/crnn.py`) trained on a track-level label from the dataset's
record attributes (the demo corpus's `style` by default), single-label with
a softmax cross-entropy or multi-label with per-class sigmoids
(`config.labels.multi_label`). Its attention curve over frames is what
highlight extraction reads (`attention`).

This file holds the classifier's own parts (input, model and optimizer,
loss and update step, evals); the loop (`trainers/loop.py`) does mesh,
sharding, checkpoints and exact resume, preemption, non-finite steps and
progress. Every random draw depends only on (seed, step), so a resumed run
continues exactly as an uninterrupted one.
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
from jplaylist.data import pipeline
from jplaylist.models import crnn
from jplaylist.models import hyper_cnn
from jplaylist.models import log_mel_classifier
from jplaylist.trainers import loop
from jplaylist.trainers import optimizer as optimizer_lib


# ---------------------------------------------------------------- input ----
def label_options(config: ml_collections.ConfigDict) -> pipeline.LabelOptions:
  return pipeline.LabelOptions(field=config.labels.field,
                               classes=tuple(config.labels.classes),
                               multi_label=config.labels.multi_label)


def make_loaders(config: ml_collections.ConfigDict, split: str, *, train: bool):
  """This host's loaders of (window, label) batches, one per input shard it owns."""
  return loop.shard_loaders(
      config, split, train,
      lambda path, split, options: pipeline.make_loader(path, split, options,
                                                        labels=label_options(config)))


# --------------------------------------------------- model and optimizer ----
# config.model.kind -> the network: the CRNN with attention, the hyper-image
# CNN (`models/hyper_cnn.py`, issue 16) or the M-ResNet over log-mel it is
# compared with (`models/log_mel_classifier.py`). Each returns (logits,
# second output: attention weights or the embedding).
MODEL_KINDS = ("crnn", "hyper_cnn", "mresnet")


def build_model(config: ml_collections.ConfigDict):
  kind = config.model.get("kind", "crnn")
  if kind not in MODEL_KINDS:
    raise ValueError(f"config.model.kind={kind!r}; known: {MODEL_KINDS}")
  if kind == "hyper_cnn":
    return hyper_cnn.build(config)
  if kind == "mresnet":
    return log_mel_classifier.build(config)
  return crnn.build(config)


def init_variables(model, config: ml_collections.ConfigDict, rng: jax.Array
                   ) -> dict[str, Any]:
  """{"params"} or, for a model with BatchNorm, {"params", "batch_stats"}."""
  if isinstance(model, hyper_cnn.Model):
    return hyper_cnn.init(model, rng, window_seconds=config.input.window_seconds)
  if isinstance(model, log_mel_classifier.Model):
    return log_mel_classifier.init(model, rng, sample_rate=config.model.sample_rate)
  return crnn.init(model, rng)


def init_train_state(model, config: ml_collections.ConfigDict,
                     optimizer: optax.GradientTransformation,
                     rng: jax.Array) -> loop.TrainState:
  variables = init_variables(model, config, rng)
  params = variables["params"]
  return loop.TrainState(step=jnp.zeros([], jnp.int32), params=params,
                         batch_stats=variables.get("batch_stats", {}),
                         opt_state=optimizer.init(params))


def apply(model, params, batch_stats, audio, audio_length=None, *, train: bool = False,
          rng: jax.Array | None = None):
  """(logits, second output[, new batch_stats when training with BatchNorm])."""
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  rngs = {"dropout": rng} if rng is not None else {}
  if train and batch_stats:
    outputs, updated = model.apply(variables, audio, audio_length, train=True, rngs=rngs,
                                   mutable=["batch_stats"])
    return outputs, updated["batch_stats"]
  outputs = model.apply(variables, audio, audio_length, train=train, rngs=rngs)
  return outputs, batch_stats


def warm_start(params, config: ml_collections.ConfigDict, log=print):
  """Parameters of another classifier run (`config.warm_start.workdir`) over `params`."""
  spec = config.get("warm_start") or {}
  if not spec.get("workdir"):
    return params
  params, report = crnn.load(params, spec.workdir, strict=spec.get("strict", True))
  log(f"warm-started from {spec.workdir} ({len(report['loaded'])} tensors; kept "
      f"{report['kept']})")
  return params


# ----------------------------------------------------------------- loss ----
def classification_loss(*, logits: jax.Array, labels: jax.Array, multi_label: bool
                        ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean cross-entropy and accuracy of a batch.

  Args:
    logits: [B, C] class logits.
    labels: [B] int class indices (single-label) or [B, C] multi-hot.
    multi_label: per-class sigmoid cross-entropy (mean over classes and
      examples), accuracy per (example, class) at a 0.5 threshold; otherwise
      softmax cross-entropy and top-1 accuracy.

  Returns:
    (loss, {"loss", "accuracy"}).
  """
  logits = logits.astype(jnp.float32)
  if multi_label:
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
    accuracy = jnp.mean(((logits > 0) == (labels > 0.5)).astype(jnp.float32))
  else:
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
  return loss, {"loss": loss, "accuracy": accuracy}


def uniform_loss(config: ml_collections.ConfigDict) -> float:
  """The loss of logits that say nothing (all equal): ln C, or ln 2 per class."""
  return math.log(2.0) if config.labels.multi_label else math.log(len(config.labels.classes))


# ---------------------------------------------------------- update step ----
def make_step_functions(config: ml_collections.ConfigDict, model,
                        optimizer: optax.GradientTransformation, schedule: optax.Schedule):
  """The pure (unjitted) forward and update functions of a training step.

  Returns:
    forward(params, batch_stats, batch, rng, train) -> (loss, (metrics, batch_stats))
    update(state, batch, rng) -> (state, metrics); rng is folded with the step.
  """
  multi_label = bool(config.labels.multi_label)
  # optax.MultiSteps (optimizer.py) applies one update per `accumulation` steps.
  accumulation = max(1, config.optimizer.get("accumulation_steps", 1))

  def forward(params, batch_stats, batch, rng, train):
    (logits, _), batch_stats = apply(model, params, batch_stats, batch["audio"],
                                     batch.get("audio_length"), train=train, rng=rng)
    loss, metrics = classification_loss(logits=logits, labels=batch["label"],
                                         multi_label=multi_label)
    return loss, (metrics, batch_stats)

  def update(state: loop.TrainState, batch, rng):
    step_rng = jax.random.fold_in(rng, state.step)
    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(forward, has_aux=True)(
        state.params, state.batch_stats, batch, step_rng, True)
    state, step_metrics = loop.apply_gradients(state, grads, loss, optimizer, schedule,
                                               accumulation, batch_stats=batch_stats)
    return state, dict(metrics, **step_metrics)

  return forward, update


# ---------------------------------------------------------------- loop ----
def make_task(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> loop.Task:
  """The classifier as the shared loop's Task."""
  del mesh  # XLA partitions the jitted step; nothing here runs per device.
  if config.optimizer.get("gradient_cache_microbatches", 0) > 1:
    raise ValueError("config.optimizer.gradient_cache_microbatches applies to the "
                     "contrastive loss only (its negatives span the batch); the "
                     "classifier's loss is per example: use accumulation_steps")
  if config.get("compute_dtype", "float32") != "float32":
    raise ValueError(f"config.compute_dtype={config.compute_dtype!r}: the classifier "
                     "trains in float32 only")
  model = build_model(config)
  optimizer, schedule = optimizer_lib.make(config.optimizer)
  forward, update = make_step_functions(config, model, optimizer, schedule)

  def eval_step(state, batch):
    return forward(state.params, state.batch_stats, batch, jax.random.key(0), False)[1][0]

  def eval_report(results):
    results = dict(results, uniform_loss=uniform_loss(config))
    return results, (f"eval loss {results['loss']:.4f} (uniform: "
                     f"{results['uniform_loss']:.4f}), accuracy {results['accuracy']:.3f}")

  return loop.Task(
      init_state=functools.partial(init_train_state, model, config, optimizer),
      state_specs=loop.train_state_specs(optimizer, config.get("param_rules", ())),
      update=update,
      make_loaders=lambda split, train: make_loaders(config, split, train=train),
      next_batch=loop.next_host_batch,
      warm_start=lambda params, log: warm_start(params, config, log=log),
      eval_step=eval_step, eval_report=eval_report)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: tuple[str, ...] = ()) -> dict[str, Any]:
  """Trains (or resumes) the classifier in `workdir` (see `loop.train`).

  Returns:
    loop.train's result plus "uniform_loss" (the loss of uninformative logits).
  """
  result = loop.train(config, workdir, functools.partial(make_task, config),
                      allow_config_change=allow_config_change)
  return dict(result, uniform_loss=uniform_loss(config))


def eval_summary(result: dict[str, Any]) -> str:
  """The launcher's line about a finished run's held-out figures."""
  return (f"Held-out classification loss {result['eval']['loss']:.4f} "
          f"(uniform: {result['uniform_loss']:.4f}); accuracy "
          f"{result['eval']['accuracy']:.3f}")


# ------------------------------------------------------------ inference ----
def restore(workdir: str, step: int | None = None
            ) -> tuple[Any, dict[str, Any], ml_collections.ConfigDict]:
  """A trained classifier: (model, params, config) from its workdir's checkpoint."""
  state, saved = checkpoint_lib.restore_on_host(workdir, step)
  config = ml_collections.ConfigDict(saved)
  return build_model(config), state["params"], config


def restore_variables(workdir: str, step: int | None = None
                      ) -> tuple[Any, dict[str, Any], ml_collections.ConfigDict]:
  """(model, {"params"[, "batch_stats"]}, config) of a trained classifier."""
  state, saved = checkpoint_lib.restore_on_host(workdir, step)
  config = ml_collections.ConfigDict(saved)
  variables = {"params": state["params"]}
  if state.get("batch_stats"):
    variables["batch_stats"] = state["batch_stats"]
  return build_model(config), variables, config


def attention(model: crnn.Model, params: dict[str, Any], audio: np.ndarray,
              audio_length: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Class logits and attention curves of windows (for highlight extraction).

  Args:
    model, params: from `restore`.
    audio: [B, samples] int16 or float waveforms of the model's window length.
    audio_length: [B] real samples per row; None: all real.

  Returns:
    (logits [B, C], attention [B, T]: `crnn.frame_seconds(model.frontend)`
    seconds per frame, summing to 1 over each row's valid frames).
  """
  logits, weights = _apply(model, params, jnp.asarray(audio),
                           None if audio_length is None else jnp.asarray(audio_length))
  return np.asarray(logits), np.asarray(weights)


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, params, audio, audio_length):
  return model.apply({"params": params}, audio, audio_length, train=False)
