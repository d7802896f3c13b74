"""Self-supervised embeddings with an adversarial Gaussian prior (issue 14).

Two neighbouring passages of one recording are related; a passage of another
composition is not. No labels: the input pipeline cuts two adjacent windows
of each recording (`MakePair`), and the other recordings of the batch give
the negatives. `config.adversarial.positive="rendition"` pairs a window with
the same stretch of another rendition of its composition instead, so that
what the pair shares is the piece rather than its rendering (the adjacent
pairs of the demo corpus share soundfont, ensemble, tempo, key and recording
chain, which tell them apart from other recordings without the music).

Two forms (`config.adversarial.form`):

  "adjacency"  (Siamese) a small classifier on the concatenation of two
               embeddings (`models.adjacency.AdjacencyHead`) tells adjacent
               pairs (a_i, b_i) from pairs of windows of two compositions
               (a_i, b_j), by cross-entropy;
  "dssm"       a softmax over the similarities of a reference a_i to its
               positive b_i and the batch's other windows b_j (negatives):
               cosine, gamma * cos(a, b), or Euclidean,
               -gamma * |a - b|^2 / (2 d), so that two independent draws of
               N(0, I) sit at about -gamma and identical ones at 0.

Windows of the same composition (another rendition, say) are never used as
negatives: `group` (a hash of the record's `composition` attribute) masks
them out.

Each step has two phases, in this order:
  1. metric: the embedder and the form's head take one Adam step (the
     optimizer of `config.optimizer`: weight decay, step decay) on the
     form's loss;
  2. adversarial (`config.adversarial.prior`): a discriminator
     (`models.adjacency.Discriminator`) learns to tell the reference windows'
     embeddings from samples of N(0, I), and the embedder takes a step to
     fool it. Both use their own Adam optimizers at
     `config.adversarial.learning_rate`, higher than the metric phase's: the
     source notes that adversarial updates at the metric rate have no effect.
     Both are computed with the discriminator as it was before this phase
     (simultaneous updates from one forward pass).

A step with any non-finite loss or gradient changes nothing but the step
counter. Every draw (prior samples, windows) depends only on (seed, step),
and the shared loop (`trainers/loop.py`) restores parameters, the three
optimizer states and the input positions, so a resumed run continues exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import zlib
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jplaylist import checkpoint as checkpoint_lib
from jplaylist.data import builder
from jplaylist.data import pipeline
from jplaylist.models import adjacency
from jplaylist.trainers import loop
from jplaylist.trainers import optimizer as optimizer_lib

FORMS = ("adjacency", "dssm")
METRICS = ("euclidean", "cosine")


# ---------------------------------------------------------------- input ----
def pair_windows(audio: np.ndarray, window: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Two adjacent windows of one recording: ([2, window] int16, lengths [2] int32).

  A recording of at least 2 * window samples gives two back-to-back windows
  at a uniform start; a shorter one is cut in two halves, each zero-padded at
  its end (its length says how much is real).
  """
  if audio.dtype != np.int16:
    raise ValueError(f"expected int16 samples (as the dataset stores them), got {audio.dtype}")
  n = audio.shape[0]
  out = np.zeros((2, window), np.int16)
  if n >= 2 * window:
    start = int(rng.integers(0, n - 2 * window + 1))
    out[0] = audio[start:start + window]
    out[1] = audio[start + window:start + 2 * window]
    return out, np.array([window, window], np.int32)
  half = n // 2
  out[0, :half] = audio[:half]
  out[1, :n - half] = audio[half:]
  return out, np.array([half, n - half], np.int32)


def rendition_windows(audio: np.ndarray, other: np.ndarray, window: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """A window of one recording and the same stretch of another rendition.

  The reference window starts uniformly at random; the positive starts at the
  same fraction of the other recording's playable length (renditions at other
  tempi play the same passage at the same fraction of their length, as far as
  both play the piece through). Either window is zero-padded at its end when
  its recording is shorter than a window. Returns ([2, window] int16,
  lengths [2] int32).
  """
  for samples in (audio, other):
    if samples.dtype != np.int16:
      raise ValueError(f"expected int16 samples (as the dataset stores them), got {samples.dtype}")
  n, m = audio.shape[0], other.shape[0]
  start = int(rng.integers(0, n - window + 1)) if n > window else 0
  fraction = start / (n - window) if n > window else 0.0
  other_start = int(round(fraction * (m - window))) if m > window else 0
  a, a_len = pipeline.window_at(audio, start, window)
  b, b_len = pipeline.window_at(other, other_start, window)
  return np.stack([a, b]), np.array([a_len, b_len], np.int32)


def group_of(attributes: dict[str, Any], record_id: str) -> np.int32:
  """A 31-bit id of the record's composition (its id when it has none)."""
  name = str(attributes.get("composition") or record_id)
  return np.int32(zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF)


def _as_str(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


POSITIVES = ("adjacent", "rendition")


class MakePair(grain.transforms.RandomMap):
  """TFDS record -> {"audio": [2, window] int16, "audio_length": [2], "group"}.

  positive="adjacent": the two windows are back to back in the record
  (`pair_windows`). positive="rendition": the second window is the same
  stretch of another recording of the record's composition in the same split
  (`rendition_windows`; one drawn uniformly when there are several), so the
  pair shares the piece but not its rendering (soundfont, ensemble, tempo,
  key, recording chain); a record whose composition has no other recording
  in the split falls back to its adjacent windows. `source` is the split's
  data source, needed for "rendition" only.
  """

  def __init__(self, window_seconds: float, sample_rate: int, positive: str = "adjacent",
               source=None):
    if positive not in POSITIVES:
      raise ValueError(f"positive={positive!r}; known: {POSITIVES}")
    if positive == "rendition" and source is None:
      raise ValueError('positive="rendition" needs the split\'s data source')
    self.window = int(round(window_seconds * sample_rate))
    self.positive = positive
    self._source = source if positive == "rendition" else None
    self.renditions: dict[int, list[tuple[int, str]]] = {}
    if self._source is not None:
      self.renditions = renditions_of(self._source)

  def random_map(self, element: dict[str, Any], rng: np.random.Generator):
    record_id = _as_str(element["id"])
    group = group_of(json.loads(_as_str(element["attributes"])), record_id)
    audio = np.asarray(element["audio"])
    others = [i for i, other_id in self.renditions.get(int(group), []) if other_id != record_id]
    if others:
      other = self._source[others[int(rng.integers(len(others)))]]["audio"]
      pair, lengths = rendition_windows(audio, np.asarray(other), self.window, rng)
    else:
      pair, lengths = pair_windows(audio, self.window, rng)
    return {"audio": pair, "audio_length": lengths, "group": group}


def renditions_of(source) -> dict[int, list[tuple[int, str]]]:
  """{composition group: [(index, id)] of the source's records of it} (see `group_of`).

  Reads every record of the source once (a record is stored whole, audio
  included): a pass over the split when a rendition loader is made, 0.06 s for
  the demo corpus's 419 training recordings, longer in proportion for a
  large dataset.
  """
  groups: dict[int, list[tuple[int, str]]] = {}
  for i in range(len(source)):
    record = source[i]
    record_id = _as_str(record["id"])
    group = group_of(json.loads(_as_str(record["attributes"])), record_id)
    groups.setdefault(int(group), []).append((i, record_id))
  return groups


def make_loader(dataset_path: str, split: str, options: pipeline.PipelineOptions,
                positive: str = "adjacent"):
  """A grain DataLoader of window pairs over one split (see `MakePair`).

  `options.window_seconds` is the length of each of the two windows; the
  other options mean what they mean for `pipeline.make_loader` (texts aside).
  """
  source = builder.open_split(dataset_path, split) if positive == "rendition" else None
  return pipeline.make_loader(
      dataset_path, split, options,
      example=lambda options, sample_rate: MakePair(options.window_seconds, sample_rate,
                                                    positive, source))


def make_loaders(config: ml_collections.ConfigDict, split: str, *, train: bool):
  """This host's pair loaders, one per input shard it owns."""
  positive = config.adversarial.get("positive", "adjacent")
  return loop.shard_loaders(config, split, train,
                            functools.partial(make_loader, positive=positive))


# ---------------------------------------------------------------- losses ----
def similarities(a: jax.Array, b: jax.Array, metric: str, scale: float) -> jax.Array:
  """[B, B] similarities s_ij of a_i and b_j (see the module docstring)."""
  if metric == "cosine":
    unit = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return scale * unit(a) @ unit(b).T
  if metric == "euclidean":
    squared = (jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * a @ b.T)
    return -scale * jnp.maximum(squared, 0.0) / (2.0 * a.shape[-1])
  raise ValueError(f"unknown metric {metric!r}; known: {METRICS}")


def pair_similarities(a, b, metric: str, scale: float) -> np.ndarray:
  """[P] similarities of row pairs (a_k, b_k) [P, d]: the diagonal of
  `similarities` without the [P, P] matrix (numpy, for evaluation)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if metric == "cosine":
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return scale * np.sum(unit(a) * unit(b), axis=1)
  if metric == "euclidean":
    return -scale * np.sum((a - b) ** 2, axis=1) / (2.0 * a.shape[1])
  raise ValueError(f"unknown metric {metric!r}; known: {METRICS}")


def negative_mask(group: jax.Array) -> jax.Array:
  """[B, B] True where b_j may serve as a negative of a_i (another composition)."""
  return group[:, None] != group[None, :]


def dssm_loss(a, b, group, *, metric: str, scale: float):
  """Softmax cross-entropy of each a_i's positive b_i among the valid b_j.

  Returns (loss, {"loss", "accuracy"}): accuracy is the share of references
  whose positive has the highest similarity among them.
  """
  logits = similarities(a, b, metric, scale)
  allowed = negative_mask(group) | jnp.eye(a.shape[0], dtype=bool)
  logits = jnp.where(allowed, logits, -jnp.inf)
  labels = jnp.arange(a.shape[0])
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
  return loss, {"loss": loss, "accuracy": accuracy}


def shifted_negatives(group: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(index j of each a_i's negative, [B] validity): the next row's b, kept
  only when it is another composition."""
  other = jnp.roll(jnp.arange(group.shape[0]), -1)
  return other, group != group[other]


def adjacency_loss(head, a, b, group):
  """Binary cross-entropy of the head on the adjacent pairs (a_i, b_i) and
  the pairs (a_i, b_{i+1}) of two compositions, each half weighted equally.

  Args:
    head: (a, b) -> [B] logits.

  Returns (loss, {"loss", "accuracy"}): accuracy over all counted pairs at
  logit 0.
  """
  other, valid = shifted_negatives(group)
  positive = head(a, b)
  negative = head(a, b[other])
  weight = valid.astype(jnp.float32)
  pos_loss = jnp.mean(optax.sigmoid_binary_cross_entropy(positive, jnp.ones_like(positive)))
  neg_loss = jnp.sum(weight * optax.sigmoid_binary_cross_entropy(
      negative, jnp.zeros_like(negative))) / jnp.maximum(jnp.sum(weight), 1.0)
  loss = 0.5 * (pos_loss + neg_loss)
  correct = jnp.sum((positive > 0).astype(jnp.float32)) + jnp.sum(weight * (negative <= 0))
  accuracy = correct / (positive.shape[0] + jnp.sum(weight))
  return loss, {"loss": loss, "accuracy": accuracy}


def discriminator_loss(real_logits, fake_logits):
  """The discriminator's: prior samples are 1, embeddings 0 (mean BCE of each)."""
  return 0.5 * (jnp.mean(optax.sigmoid_binary_cross_entropy(real_logits,
                                                            jnp.ones_like(real_logits)))
                + jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits,
                                                              jnp.zeros_like(fake_logits))))


def generator_loss(fake_logits):
  """The embedder's adversarial loss: its embeddings called prior samples."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)))


# ------------------------------------------------------------ the model ----
@dataclasses.dataclass(frozen=True)
class Networks:
  embedder: adjacency.Embedder
  head: adjacency.AdjacencyHead
  discriminator: adjacency.Discriminator


def build(config: ml_collections.ConfigDict) -> Networks:
  model = config.model
  return Networks(
      embedder=adjacency.Embedder(variant=model.audio_variant, embed_dim=model.embed_dim,
                                  window_seconds=config.input.window_seconds,
                                  num_mels=model.num_mels, pooling=model.pooling),
      head=adjacency.AdjacencyHead(hidden=model.head_hidden),
      discriminator=adjacency.Discriminator(hidden=model.discriminator_hidden,
                                            layers=model.discriminator_layers))


def check_config(config: ml_collections.ConfigDict) -> None:
  adv = config.adversarial
  if adv.form not in FORMS:
    raise ValueError(f"adversarial.form={adv.form!r}; known: {FORMS}")
  if adv.metric not in METRICS:
    raise ValueError(f"adversarial.metric={adv.metric!r}; known: {METRICS}")
  if adv.get("positive", "adjacent") not in POSITIVES:
    raise ValueError(f"adversarial.positive={adv.positive!r}; known: {POSITIVES}")
  if adv.form == "adjacency" and adv.metric != "euclidean":
    raise ValueError("adversarial.metric applies to the dssm form only (the adjacency "
                     "form's classifier reads the two embeddings as they are)")
  if config.input.batch_size < 2:
    raise ValueError("input.batch_size must be at least 2: the batch's other "
                     "recordings are the negatives")
  if (config.optimizer.get("accumulation_steps", 1) > 1
      or config.optimizer.get("gradient_cache_microbatches", 0) > 1):
    raise ValueError("optimizer.accumulation_steps and gradient_cache_microbatches are not "
                     "supported by the adversarial trainer (its phases update every step)")
  if config.get("compute_dtype", "float32") != "float32":
    raise ValueError(f"config.compute_dtype={config.compute_dtype!r}: this trainer "
                     "trains in float32 only")


def optimizers(config: ml_collections.ConfigDict):
  """(metric optimizer, its schedule, generator optimizer, discriminator optimizer)."""
  metric, schedule = optimizer_lib.make(config.optimizer)
  rate = config.adversarial.learning_rate
  return metric, schedule, optax.adam(rate), optax.adam(rate)


def init_train_state(networks: Networks, config: ml_collections.ConfigDict,
                     rng: jax.Array) -> loop.TrainState:
  window = adjacency.frontend_config(config.input.window_seconds).window_samples
  e_rng, h_rng, d_rng = jax.random.split(rng, 3)
  dim = networks.embedder.embed_dim
  variables = networks.embedder.init(e_rng, jnp.zeros((2, window), jnp.float32))
  params = {"embed": variables["params"],
            "head": networks.head.init(h_rng, jnp.zeros((1, dim)), jnp.zeros((1, dim)))["params"],
            "disc": networks.discriminator.init(d_rng, jnp.zeros((1, dim)))["params"]}
  metric, _, generator, discriminator = optimizers(config)
  return loop.TrainState(
      step=jnp.zeros([], jnp.int32), params=params,
      batch_stats=variables.get("batch_stats", {}),
      opt_state={"metric": metric.init({"embed": params["embed"], "head": params["head"]}),
                 "generator": generator.init(params["embed"]),
                 "discriminator": discriminator.init(params["disc"])})


# ---------------------------------------------------------- update step ----
def make_step_functions(config: ml_collections.ConfigDict, networks: Networks):
  """(update, eval_step), pure and unjitted (see the module docstring)."""
  check_config(config)
  adv = config.adversarial
  metric_opt, schedule, generator_opt, discriminator_opt = optimizers(config)

  def embed(embed_params, batch_stats, audio, lengths, train):
    variables = {"params": embed_params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    if train and batch_stats:
      z, updated = networks.embedder.apply(variables, audio, lengths, train=True,
                                           mutable=["batch_stats"])
      return z, updated["batch_stats"]
    return networks.embedder.apply(variables, audio, lengths, train=train), batch_stats

  def pair_embeddings(embed_params, batch_stats, batch, train):
    audio, lengths = batch["audio"], batch["audio_length"]   # [B, 2, W], [B, 2]
    size = audio.shape[0]
    flat = jnp.concatenate([audio[:, 0], audio[:, 1]])          # references, then positives
    z, batch_stats = embed(embed_params, batch_stats, flat,
                           jnp.concatenate([lengths[:, 0], lengths[:, 1]]), train)
    return z[:size], z[size:], batch_stats

  def form_loss(params, a, b, group):
    if adv.form == "adjacency":
      head = lambda x, y: networks.head.apply({"params": params["head"]}, x, y)
      return adjacency_loss(head, a, b, group)
    return dssm_loss(a, b, group, metric=adv.metric, scale=adv.scale)

  def update(state: loop.TrainState, batch, rng):
    prior_rng = jax.random.fold_in(rng, state.step)

    def metric_objective(trainable):
      a, b, batch_stats = pair_embeddings(trainable["embed"], state.batch_stats, batch, True)
      loss, metrics = form_loss(trainable, a, b, batch["group"])
      return loss, (metrics, batch_stats)

    trainable = {"embed": state.params["embed"], "head": state.params["head"]}
    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(
        metric_objective, has_aux=True)(trainable)
    updates, metric_state = metric_opt.update(grads, state.opt_state["metric"], trainable)
    trainable = optax.apply_updates(trainable, updates)
    grad_norm = optax.tree.norm(grads)
    params = dict(state.params, **trainable)
    opt_state = dict(state.opt_state, metric=metric_state)
    checks = [loss, grad_norm]
    metrics = dict(metrics, grad_norm=grad_norm, learning_rate=schedule(state.step))

    if adv.prior:
      prior = jax.random.normal(prior_rng, (batch["audio"].shape[0],
                                            networks.embedder.embed_dim), jnp.float32)
      discriminate = lambda p, z: networks.discriminator.apply({"params": p}, z)

      def generator_objective(embed_params):
        a, _ = embed(embed_params, batch_stats, batch["audio"][:, 0],
                     batch["audio_length"][:, 0], True)
        return generator_loss(discriminate(state.params["disc"], a)), a

      (g_loss, fake), g_grads = jax.value_and_grad(generator_objective, has_aux=True)(
          params["embed"])
      fake = jax.lax.stop_gradient(fake)
      d_loss, d_grads = jax.value_and_grad(
          lambda p: discriminator_loss(discriminate(p, prior), discriminate(p, fake)))(
              state.params["disc"])
      g_updates, g_state = generator_opt.update(g_grads, state.opt_state["generator"])
      d_updates, d_state = discriminator_opt.update(d_grads, state.opt_state["discriminator"])
      params = dict(params, embed=optax.apply_updates(params["embed"], g_updates),
                    disc=optax.apply_updates(state.params["disc"], d_updates))
      opt_state = dict(opt_state, generator=g_state, discriminator=d_state)
      checks += [g_loss, d_loss, optax.tree.norm(g_grads), optax.tree.norm(d_grads)]
      metrics = dict(metrics, generator_loss=g_loss, discriminator_loss=d_loss,
                     embedding_norm=jnp.mean(jnp.linalg.norm(fake, axis=-1)))

    finite = jnp.all(jnp.isfinite(jnp.stack(checks)))
    new = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                        opt_state=opt_state)
    kept = jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new,
                                  state.replace(step=state.step + 1))
    return kept, dict(metrics, nonfinite=1.0 - finite.astype(jnp.float32))

  def eval_step(state: loop.TrainState, batch):
    a, b, _ = pair_embeddings(state.params["embed"], state.batch_stats, batch, False)
    loss, metrics = form_loss(state.params, a, b, batch["group"])
    dim = a.shape[-1]
    return dict(metrics, loss=loss,
                embedding_mean_abs=jnp.mean(jnp.abs(jnp.mean(a, 0))),
                embedding_variance=jnp.mean(jnp.var(a, 0)),
                mean_squared_norm_per_dim=jnp.mean(jnp.sum(a * a, -1)) / dim)

  return update, eval_step


# ---------------------------------------------------------------- loop ----
def state_specs(state: loop.TrainState) -> loop.TrainState:
  """Every leaf replicated: the networks are small; the batch is what is sharded."""
  return jax.tree_util.tree_map(lambda _: jax.sharding.PartitionSpec(), state)


def make_task(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> loop.Task:
  del mesh  # XLA partitions the jitted step over the batch's sharding.
  networks = build(config)
  update, eval_step = make_step_functions(config, networks)

  def eval_report(results):
    message = (f"eval loss {results['loss']:.4f}, {config.adversarial.form} accuracy "
               f"{results['accuracy']:.3f}; embeddings: mean |mean| "
               f"{results['embedding_mean_abs']:.3f}, mean variance "
               f"{results['embedding_variance']:.3f} (prior: 0, 1)")
    return results, message

  return loop.Task(
      init_state=functools.partial(init_train_state, networks, config),
      state_specs=state_specs, update=update,
      make_loaders=lambda split, train: make_loaders(config, split, train=train),
      next_batch=loop.next_host_batch, eval_step=eval_step, eval_report=eval_report)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: tuple[str, ...] = ()) -> dict[str, Any]:
  """Trains (or resumes) the adversarial embedding in `workdir` (see `loop.train`)."""
  return loop.train(config, workdir, functools.partial(make_task, config),
                    allow_config_change=allow_config_change)


def eval_summary(result: dict[str, Any]) -> str:
  """The launcher's line about a finished run's held-out figures."""
  if not result["eval"]:
    return "No held-out evaluation ran (eval_every is 0 or the split is too small)."
  return (f"Held-out loss {result['eval']['loss']:.4f}; pair accuracy "
          f"{result['eval']['accuracy']:.3f}")


# ------------------------------------------------------------ inference ----
def restore(workdir: str, step: int | None = None):
  """(networks, params, batch_stats, config) of a trained run."""
  state, saved = checkpoint_lib.restore_on_host(workdir, step)
  config = ml_collections.ConfigDict(saved)
  return build(config), state["params"], state.get("batch_stats", {}), config


@functools.partial(jax.jit, static_argnums=0)
def _embed(embedder, variables, audio, audio_length):
  return embedder.apply(variables, audio, audio_length, train=False)


def embed(networks: Networks, params, batch_stats, audio, audio_length=None,
          batch_size: int = 32) -> np.ndarray:
  """Embeddings [N, d] of windows [N, samples] (int16 or float), in batches."""
  variables = {"params": params["embed"]}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  audio = np.asarray(audio)
  lengths = (np.full(len(audio), audio.shape[1], np.int32) if audio_length is None
             else np.asarray(audio_length, np.int32))
  out = []
  for start in range(0, len(audio), batch_size):
    chunk, chunk_lengths = audio[start:start + batch_size], lengths[start:start + batch_size]
    pad = batch_size - len(chunk)  # one compiled shape
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
      chunk_lengths = np.concatenate([chunk_lengths, np.full(pad, chunk.shape[1], np.int32)])
    out.append(np.asarray(_embed(networks.embedder, variables, chunk, chunk_lengths))[
        :batch_size - pad])
  return np.concatenate(out) if out else np.zeros((0, networks.embedder.embed_dim), np.float32)


def adjacency_logits(networks: Networks, params, a, b) -> np.ndarray:
  """The adjacency head's logits of embedding pairs ([N, d] each)."""
  return np.asarray(networks.head.apply({"params": params["head"]}, jnp.asarray(a),
                                        jnp.asarray(b)))
