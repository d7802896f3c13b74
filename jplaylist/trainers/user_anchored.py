"""User-anchored metric learning on the shared loop (issue 16, item 4).

For a user u, a track r+ the user liked should score above n tracks r- the
user disliked, the score being the cosine of the user's embedding (the user
branch over history and demographics, `models/user_anchored.py`) and the
track's audio embedding (the Siamese audio branch over a 3-s or 10-s
window of its audio). Losses (`config.loss.kind`), over [B, 1 + n] cosines
s (column 0 the liked track):

  "metric"  the hinge max(0, margin - s+ + s-) averaged over the n negatives
            and the batch (margin `config.loss.margin`, 0.2 by default):
            Metric-1vs1 and 1vs4 by `config.loss.negatives`;
  "binary"  Basic-Binary: sigmoid cross-entropy of scale * s, liked 1 and
            disliked 0, the two classes weighted equally;
  "multi"   Multi-1vs1 / 1vs4: softmax cross-entropy of scale * s over the
            liked track and its n negatives.

`config.model.user = "lookup"` swaps the user branch for a table of
training users (the DCUE baseline), which cannot embed an unseen user.

The data are the dataset's recordings as a track library and the users of
`session/users.py` (simulated from the tracks' attributes, or read from
files, `config.users`). Tracks of `config.users.new_track_splits` (the
test split: compositions never trained on) are held out entirely, a share of
users too; the seen users' other interactions are cut 60/20/20 per user
(`users.split`). A training example is one liked (train) interaction with n
disliked (train) tracks of the same user drawn at random; each track gets a
window cut at random from its recording. The draws depend only on (seed,
position in the input), which the loop checkpoints, so resuming is exact.
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
from jplaylist import library_index
from jplaylist.data import builder
from jplaylist.data import pipeline
from jplaylist.models import user_anchored as model_lib
from jplaylist.session import library as library_lib
from jplaylist.session import users as users_lib
from jplaylist.trainers import loop
from jplaylist.trainers import optimizer as optimizer_lib

LOSSES = ("metric", "binary", "multi")


# ---------------------------------------------------------------- world ----
@dataclasses.dataclass(frozen=True)
class World:
  """The tracks, users and their split a run trains and is evaluated on.

  Attributes:
    dataset_path: the dataset's version folder.
    track_ids, attributes: N tracks (records of `track_splits`, in order).
    track_split, track_index: where each track's record is.
    users: the users (`session.users.Users`).
    split: their interactions' parts (`session.users.Split`).
    history, history_mask: [U, H] int32 / bool padded histories (no new tracks).
    sample_rate: of the dataset's audio.
  """
  dataset_path: str
  track_ids: tuple[str, ...]
  attributes: tuple[dict, ...]
  track_split: tuple[str, ...]
  track_index: np.ndarray
  users: users_lib.Users
  split: users_lib.Split
  history: np.ndarray
  history_mask: np.ndarray
  sample_rate: int

  @functools.cached_property
  def sources(self) -> dict[str, Any]:
    return {s: builder.open_split(self.dataset_path, s) for s in sorted(set(self.track_split))}

  def audio(self, track: int) -> np.ndarray:
    """The recording of track row `track`: [samples] int16 (memory-mapped)."""
    return np.asarray(self.sources[self.track_split[track]][int(self.track_index[track])]["audio"])

  def user_features(self, rows: np.ndarray) -> dict[str, np.ndarray]:
    rows = np.asarray(rows, np.int32)
    return {"user": rows, "history": self.history[rows], "history_mask": self.history_mask[rows],
            "demographics": self.users.demographics[rows]}


def _as_str(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def pad_histories(histories, max_length: int) -> tuple[np.ndarray, np.ndarray]:
  """([U, H] int32 rows, [U, H] bool mask), H = min(longest, max_length) (at least 1)."""
  width = max(1, min(max_length, max((len(h) for h in histories), default=1)))
  rows = np.zeros((len(histories), width), np.int32)
  mask = np.zeros((len(histories), width), bool)
  for u, history in enumerate(histories):
    history = np.asarray(history)[:width]
    rows[u, :len(history)] = history
    mask[u, :len(history)] = True
  return rows, mask


def build_world(config: ml_collections.ConfigDict, log=print) -> World:
  """Reads the track catalogue and makes (or loads) the users and their split."""
  spec = config.users
  path = builder.dataset_path(config.input.data_dir, config.input.dataset)
  ids, attributes, track_split, track_index = [], [], [], []
  for split in spec.track_splits:
    source = builder.open_split(path, split)
    for i in range(len(source)):
      record = source[i]
      ids.append(_as_str(record["id"]))
      attributes.append(json.loads(_as_str(record["attributes"])))
      track_split.append(split)
      track_index.append(i)
  new_track = np.isin(np.array(track_split), list(spec.new_track_splits))
  if spec.interactions_path:
    users, report = users_lib.load(spec.interactions_path, spec.demographics_path, ids,
                                   history_path=spec.history_path or None)
    skipped = {k: v for k, v in report.items() if v}
    if skipped:
      log(f"users: skipped rows of {spec.interactions_path}: {skipped}")
  else:
    library = library_lib.library_from_index(library_index.LibraryIndex(
        ids=ids, embeddings=np.zeros((len(ids), 1), np.float32), attributes=attributes,
        meta={}))
    users = users_lib.simulate(
        library, users_lib.SimSettings(
            num_users=spec.num_users, min_liked=spec.min_liked, min_disliked=spec.min_disliked,
            min_exposed=spec.min_exposed, history_length=spec.history_length,
            group_weight=spec.group_weight, sharpness=spec.sharpness, seed=spec.seed),
        attribute_names=tuple(spec.attributes), history_tracks=~new_track)
  split = users_lib.split(users, new_track, unseen_fraction=spec.unseen_fraction,
                          fractions=tuple(spec.fractions), seed=spec.seed)
  history, history_mask = pad_histories(split.history, spec.history_length)
  return World(dataset_path=path, track_ids=tuple(ids), attributes=tuple(attributes),
               track_split=tuple(track_split), track_index=np.asarray(track_index, np.int64),
               users=users, split=split, history=history, history_mask=history_mask,
               sample_rate=builder.sample_rate_of(path))


# ---------------------------------------------------------------- input ----
class InteractionSource:
  """Random access over the liked interactions of one part (grain data source)."""

  def __init__(self, rows: np.ndarray):
    self.rows = np.asarray(rows, np.int64)

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, index: int) -> int:
    return int(self.rows[index])

  def __repr__(self) -> str:
    # Grain checks a restored iterator's source by its repr: name the rows.
    return (f"InteractionSource({len(self.rows)} rows, crc32 "
            f"{zlib.crc32(self.rows.tobytes()):08x})")


class MakeUserExample(grain.transforms.RandomMap):
  """An interaction row -> {user features, "audio": [1 + n, window] int16}.

  The liked track first, then n tracks the user disliked in the part (drawn
  with replacement), each a window cut at random from its recording.
  """

  def __init__(self, world: World, part: str, negatives: int, window_seconds: float):
    self.world = world
    self.negatives = negatives
    self.window = int(round(window_seconds * world.sample_rate))
    self.disliked = negative_pools(world, part)

  def random_map(self, row: int, rng: np.random.Generator):
    users = self.world.users
    user = int(users.user[row])
    pool = self.disliked.get(user, np.zeros(0, np.int32))
    if not len(pool):
      raise ValueError(f"user {users.user_ids[user]!r} has no disliked track to draw "
                       f"negatives from")
    tracks = [int(users.track[row])] + [int(t) for t in rng.choice(pool, self.negatives)]
    audio = np.stack([pipeline.cut_window(self.world.audio(t), self.window, rng)[0]
                      for t in tracks])
    example = {k: v[0] for k, v in self.world.user_features(np.array([user])).items()}
    return dict(example, audio=audio)


def negative_pools(world: World, part: str) -> dict[int, np.ndarray]:
  """user row -> the tracks negatives are drawn from: those the user disliked
  in `part`, or (a held-out part where the user has none) in "train"."""
  users = world.users
  pools = {}
  for name in dict.fromkeys(["train", part]):
    rows = world.split.parts[name]
    disliked = rows[~users.liked[rows]]
    for u in np.unique(users.user[disliked]):
      pools[int(u)] = users.track[disliked[users.user[disliked] == u]]
  return pools


def trainable_rows(world: World, part: str) -> np.ndarray:
  """Liked interactions of `part` whose user has negatives (`negative_pools`)."""
  users, rows = world.users, world.split.parts[part]
  liked = rows[users.liked[rows]]
  return liked[np.isin(users.user[liked], list(negative_pools(world, part)))]


class _Empty:
  """A loader of no batches: the loop reports an eval split too small and goes on."""

  def __iter__(self):
    return iter(())


def make_loader(world: World, part: str, options: pipeline.PipelineOptions, negatives: int):
  """A grain DataLoader of (user, liked + n disliked windows) batches over one part."""
  rows = trainable_rows(world, part)
  if len(rows) < options.batch_size * options.shard_count:
    if options.num_epochs is not None:  # evaluation: skipped, and the loop says so
      return _Empty()
    raise ValueError(f"part {part!r} has {len(rows)} usable liked interactions, fewer than "
                     f"one global batch of {options.batch_size * options.shard_count}")
  sampler = grain.samplers.IndexSampler(
      num_records=len(rows), shuffle=options.shuffle, num_epochs=options.num_epochs,
      seed=options.seed, shard_options=grain.sharding.ShardOptions(
          shard_index=options.shard_index, shard_count=options.shard_count,
          drop_remainder=True))
  return grain.DataLoader(
      data_source=InteractionSource(rows), sampler=sampler,
      operations=[MakeUserExample(world, part, negatives, options.window_seconds),
                  grain.transforms.Batch(options.batch_size, drop_remainder=True)],
      worker_count=options.worker_count)


# ---------------------------------------------------------------- losses ----
def hinge_loss(*, scores: jax.Array, margin: float) -> tuple[jax.Array, dict]:
  """mean over b, j of max(0, margin - s[b, 0] + s[b, j]), j = 1..n.

  Args:
    scores: [B, 1 + n] cosines, the liked track in column 0.
  """
  loss = jnp.mean(jnp.maximum(0.0, margin - scores[:, :1] + scores[:, 1:]))
  return loss, {"loss": loss}


def binary_loss(*, scores: jax.Array, scale: float) -> tuple[jax.Array, dict]:
  """Sigmoid cross-entropy of scale * s: liked 1, disliked 0, classes weighted equally."""
  logits = scale * scores
  positive = jnp.mean(optax.sigmoid_binary_cross_entropy(logits[:, 0], jnp.ones_like(logits[:, 0])))
  negative = jnp.mean(optax.sigmoid_binary_cross_entropy(logits[:, 1:],
                                                         jnp.zeros_like(logits[:, 1:])))
  loss = 0.5 * (positive + negative)
  return loss, {"loss": loss}


def softmax_loss(*, scores: jax.Array, scale: float) -> tuple[jax.Array, dict]:
  """Softmax cross-entropy of the liked track (column 0) among its row, logits scale * s."""
  labels = jnp.zeros(scores.shape[0], jnp.int32)
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(scale * scores, labels))
  return loss, {"loss": loss}


def objective(config: ml_collections.ConfigDict, scores: jax.Array):
  """The loss of `config.loss.kind` with "accuracy": the share of rows where
  the liked track scores above every negative."""
  kind = config.loss.kind
  if kind == "metric":
    loss, metrics = hinge_loss(scores=scores, margin=config.loss.margin)
  elif kind == "binary":
    loss, metrics = binary_loss(scores=scores, scale=config.loss.scale)
  elif kind == "multi":
    loss, metrics = softmax_loss(scores=scores, scale=config.loss.scale)
  else:
    raise ValueError(f"config.loss.kind={kind!r}; known: {LOSSES}")
  accuracy = jnp.mean((scores[:, 0] > jnp.max(scores[:, 1:], axis=1)).astype(jnp.float32))
  return loss, dict(metrics, accuracy=accuracy)


# --------------------------------------------------- model and optimizer ----
def build_model(config: ml_collections.ConfigDict, world: World) -> model_lib.Model:
  m = config.model
  return model_lib.Model(user=m.user, num_tracks=world.users.num_tracks,
                         num_users=world.users.num_users, embed_dim=m.embed_dim,
                         track_dim=m.track_dim, user_hidden=tuple(m.user_hidden),
                         window_seconds=config.input.window_seconds, num_mels=m.num_mels,
                         channels=tuple(m.channels))


def init_variables(model: model_lib.Model, world: World, rng: jax.Array) -> dict[str, Any]:
  """{"params", "batch_stats"} of a freshly initialised model."""
  window = int(round(model.window_seconds * world.sample_rate))
  users = {k: jnp.asarray(v) for k, v in world.user_features(np.zeros(1, np.int32)).items()}
  variables = model.init(rng, users, jnp.zeros((2, window), jnp.int16))
  return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def check_config(config: ml_collections.ConfigDict) -> None:
  if config.loss.kind not in LOSSES:
    raise ValueError(f"config.loss.kind={config.loss.kind!r}; known: {LOSSES}")
  if config.model.user not in model_lib.USER_KINDS:
    raise ValueError(f"config.model.user={config.model.user!r}; known: {model_lib.USER_KINDS}")
  if config.loss.negatives < 1:
    raise ValueError(f"config.loss.negatives={config.loss.negatives}: at least 1")
  if config.get("compute_dtype", "float32") != "float32":
    raise ValueError(f"config.compute_dtype={config.compute_dtype!r}: this trainer "
                     "trains in float32 only")
  if config.optimizer.get("gradient_cache_microbatches", 0) > 1:
    raise ValueError("config.optimizer.gradient_cache_microbatches is not supported by "
                     "the user-anchored trainer; use accumulation_steps")


# ---------------------------------------------------------- update step ----
def make_step_functions(config: ml_collections.ConfigDict, model: model_lib.Model,
                        optimizer: optax.GradientTransformation, schedule: optax.Schedule):
  """(forward, update(state, batch, rng)), pure.

  forward(params, batch_stats, batch, train) -> (loss, (metrics, batch_stats)):
  in training the audio branch centres on the batch's mean and returns the
  updated running mean; otherwise it uses the running mean.
  """
  accumulation = max(1, config.optimizer.get("accumulation_steps", 1))

  def forward(params, batch_stats, batch, train):
    audio = batch["audio"]                                    # [B, 1 + n, W]
    size, tracks = audio.shape[:2]
    variables = {"params": params, "batch_stats": batch_stats}
    users = model.apply(variables, batch, method=model_lib.Model.embed_users)
    flat = audio.reshape(size * tracks, -1)
    if train:
      embedded, updated = model.apply(variables, flat, True, method=model_lib.Model.embed_audio,
                                      mutable=["batch_stats"])
      batch_stats = updated["batch_stats"]
    else:
      embedded = model.apply(variables, flat, method=model_lib.Model.embed_audio)
    scores = model_lib.cosine(users[:, None, :], embedded.reshape(size, tracks, -1))
    loss, metrics = objective(config, scores)
    return loss, (metrics, batch_stats)

  def update(state: loop.TrainState, batch, rng):
    del rng  # nothing random on device: the input drew the windows and negatives
    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(forward, has_aux=True)(
        state.params, state.batch_stats, batch, True)
    state, step_metrics = loop.apply_gradients(state, grads, loss, optimizer, schedule,
                                               accumulation, batch_stats=batch_stats)
    return state, dict(metrics, **step_metrics)

  return forward, update


# ---------------------------------------------------------------- loop ----
def make_task(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *,
              world: World | None = None) -> loop.Task:
  """The user-anchored trainer as the shared loop's Task."""
  del mesh  # XLA partitions the jitted step over the batch's sharding.
  check_config(config)
  world = world or build_world(config)
  model = build_model(config, world)
  optimizer, schedule = optimizer_lib.make(config.optimizer)
  forward, update = make_step_functions(config, model, optimizer, schedule)

  def init_state(rng):
    variables = init_variables(model, world, rng)
    return loop.TrainState(step=jnp.zeros([], jnp.int32), params=variables["params"],
                           batch_stats=variables["batch_stats"],
                           opt_state=optimizer.init(variables["params"]))

  def make_loaders(split, train):
    part = "train" if train else split
    return loop.shard_loaders(
        config, part, train,
        lambda path, part, options: make_loader(world, part, options, config.loss.negatives))

  def eval_step(state, batch):
    loss, (metrics, _) = forward(state.params, state.batch_stats, batch, False)
    return dict(metrics, loss=loss)

  def eval_report(results):
    return results, (f"eval loss {results['loss']:.4f}, liked above all "
                     f"{config.loss.negatives} disliked: {results['accuracy']:.3f}")

  return loop.Task(init_state=init_state,
                   state_specs=loop.train_state_specs(optimizer, config.get("param_rules", ())),
                   update=update, make_loaders=make_loaders, next_batch=loop.next_host_batch,
                   eval_step=eval_step, eval_report=eval_report)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: tuple[str, ...] = ()) -> dict[str, Any]:
  """Trains (or resumes) in `workdir` (see `loop.train`); evaluate with
  `evaluators.user_anchored.evaluate` (launch/evaluate.py)."""
  return loop.train(config, workdir, functools.partial(make_task, config),
                    allow_config_change=allow_config_change)


def eval_summary(result: dict[str, Any]) -> str:
  """The launcher's line about a finished run's held-out figures."""
  return (f"Validation loss {result['eval']['loss']:.4f}; liked track above all "
          f"negatives {result['eval']['accuracy']:.3f}. AUC tables: python -m "
          f"launch.evaluate --workdir=<workdir>")


# ------------------------------------------------------------ inference ----
def restore(workdir: str, step: int | None = None, world: World | None = None):
  """(model, variables {"params", "batch_stats"}, config, world) of a trained
  run (the world rebuilt from its config)."""
  state, saved = checkpoint_lib.restore_on_host(workdir, step)
  config = ml_collections.ConfigDict(saved)
  world = world or build_world(config)
  variables = {"params": state["params"], "batch_stats": state.get("batch_stats") or {}}
  if not variables["batch_stats"]:
    raise ValueError(f"{workdir}: the checkpoint has no running mean of the audio "
                     "branch (a run from before it was centred): train it again")
  return build_model(config, world), variables, config, world
