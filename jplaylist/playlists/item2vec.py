"""Item2vec: skip-gram with negative sampling over listening sequences, in JAX.

Track ids are words and listening sequences or playlists are sentences
(Barkan and Koenigstein, "Item2Vec", 2016; word2vec of Mikolov et al., 2013,
as gensim implements it). Per epoch, on the host:

  subsampling  each occurrence of token w is kept with probability
               min(1, (sqrt(c_w / t) + 1) t / c_w), t = sample * (total count
               of the vocabulary): frequent tracks are thinned (gensim's rule);
  windows      per kept position i a reduced window b_i ~ U{1..window}; the
               pairs are (i, j) for 0 < |i - j| <= b_i within one sequence;

then, on the device, a jitted SGD step over batches of pairs draws
`negative` tokens per pair from the unigram^0.75 table and descends

  -log sigmoid(u_i . v_j) - sum_k log sigmoid(-u_{n_k} . v_j),

v the input vectors (the embeddings), u the output vectors; negatives equal
to the target i are skipped, as in gensim. Plain SGD on the sum over pairs is
word2vec's per-pair update applied a batch at a time. The learning rate
decays linearly from `learning_rate` to `min_learning_rate` in gensim's
steps: the sequences are grouped in order into jobs of at most `batch_words`
raw tokens, and each job's rate is set from the progress at its start,
counted in sequences (examples), as `Word2Vec(sentences)` does: it trains
with total_examples=corpus_count, and its `_job_producer` then measures
progress as sequences pushed / total_examples. On a corpus of a few jobs per
epoch the rate stays near the epoch's starting rate (a continuous decay
learns visibly less per epoch). Each pair carries its rate as its loss weight.

Extra tokens ("composer=Palestrina", "style=German_folk") put tracks, artists
and words in one space: "inline" inserts them after each track (they share its
windows); "context" pairs each track occurrence with its own tokens both ways
(they never enter the track windows). Runs are deterministic given `seed`.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jplaylist.playlists import sequences as sequences_lib

EXTRA_TOKEN_MODES = ("none", "inline", "context")
# gensim's cum_table domain: negative draws are integers below 2^31 - 1.
CUM_TABLE_DOMAIN = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Item2VecConfig:
  """Word2vec's settings, named as gensim's `Word2Vec` arguments where they exist."""
  dim: int = 64                  # vector_size
  window: int = 5
  negative: int = 5
  min_count: int = 1
  sample: float = 1e-3
  ns_exponent: float = 0.75
  epochs: int = 5
  learning_rate: float = 0.025   # alpha
  min_learning_rate: float = 1e-4  # min_alpha
  batch_size: int = 256          # pairs per update
  batch_words: int = 10_000      # raw tokens per learning-rate step (gensim's job)
  steps_per_call: int = 32       # updates per compiled call (lax.scan)
  extra_tokens: str = "none"     # "inline" or "context" with extra tokens given
  seed: int = 0

  def __post_init__(self):
    at_least_one = ("dim", "window", "negative", "min_count", "epochs", "batch_size",
                    "batch_words", "steps_per_call")
    for name in at_least_one:
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Item2VecConfig.{name}={value!r}: expected an integer >= 1")
    for name in ("sample", "ns_exponent", "learning_rate", "min_learning_rate"):
      value = getattr(self, name)
      if not math.isfinite(value) or value < 0:
        raise ValueError(f"Item2VecConfig.{name}={value!r}: expected a finite number >= 0")
    if self.min_learning_rate > self.learning_rate:
      raise ValueError(f"Item2VecConfig.min_learning_rate={self.min_learning_rate} exceeds "
                       f"learning_rate={self.learning_rate}")
    if self.extra_tokens not in EXTRA_TOKEN_MODES:
      raise ValueError(f"Item2VecConfig.extra_tokens={self.extra_tokens!r}: expected one of "
                       f"{EXTRA_TOKEN_MODES}")


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Tokens kept (count >= min_count), most frequent first."""
  tokens: tuple[str, ...]
  counts: np.ndarray  # [V] int64

  @functools.cached_property
  def index(self) -> dict[str, int]:
    return {token: i for i, token in enumerate(self.tokens)}

  def __len__(self) -> int:
    return len(self.tokens)

  def encode(self, sequence: Sequence[str]) -> np.ndarray:
    """[L'] int32 indices of the tokens in the vocabulary (others dropped)."""
    index = self.index
    return np.asarray([index[t] for t in sequence if t in index], np.int32)


def build_vocabulary(sequences: Sequence[Sequence[str]], min_count: int = 1) -> Vocabulary:
  """Tokens seen at least `min_count` times, by count descending (ties: first seen)."""
  counts = collections.Counter()
  for sequence in sequences:
    counts.update(sequence)
  kept = [(token, c) for token, c in counts.items() if c >= min_count]
  if not kept:
    raise ValueError(f"no token occurs min_count={min_count} times in {len(sequences)} "
                     "sequences")
  kept.sort(key=lambda tc: -tc[1])  # stable: first-seen order among equal counts
  return Vocabulary(tokens=tuple(t for t, _ in kept),
                    counts=np.asarray([c for _, c in kept], np.int64))


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
  """[V] probability that one occurrence survives subsampling (gensim's formula)."""
  counts = np.asarray(counts, np.float64)
  if not sample:
    return np.ones_like(counts)
  threshold = sample * counts.sum() if sample < 1.0 else sample * (3 + math.sqrt(5)) / 2
  return np.minimum(1.0, (np.sqrt(counts / threshold) + 1.0) * (threshold / counts))


def cum_table(counts: np.ndarray, ns_exponent: float = 0.75) -> np.ndarray:
  """[V] int64 cumulative unigram^ns_exponent table over [0, 2^31 - 1] (gensim's).

  A negative is the first index whose entry is >= a uniform integer below the
  last entry; token w is drawn with probability c_w^e / sum c^e.
  """
  weights = np.asarray(counts, np.float64) ** ns_exponent
  return np.round(np.cumsum(weights) / weights.sum() * CUM_TABLE_DOMAIN).astype(np.int64)


def skipgram_pairs(encoded: Sequence[np.ndarray], keep_probability: np.ndarray, window: int,
                   rng: np.random.Generator) -> np.ndarray:
  """[P, 3] int32 (target i, input j, sequence) pairs of one epoch, in sequence order.

  Subsampling first, then a reduced window b_i ~ U{1..window} per kept
  position i, pairing it with every j != i, |i - j| <= b_i, of its sequence.
  """
  if not encoded:
    return np.zeros((0, 3), np.int32)
  flat = np.concatenate(encoded)
  seq = np.repeat(np.arange(len(encoded)), [len(e) for e in encoded])
  keep = rng.random(len(flat)) < keep_probability[flat]
  flat, seq = flat[keep], seq[keep]
  reduced = rng.integers(1, window + 1, len(flat))
  position = np.arange(len(flat))
  targets, inputs = [], []
  for offset in range(1, window + 1):
    same = seq[:-offset] == seq[offset:]
    right = same & (reduced[:-offset] >= offset)  # target i, input i + offset
    left = same & (reduced[offset:] >= offset)    # target i + offset, input i
    targets += [position[:-offset][right], position[offset:][left]]
    inputs += [position[offset:][right], position[:-offset][left]]
  target, source = np.concatenate(targets), np.concatenate(inputs)
  order = np.lexsort((source, target))  # by target position, as word2vec walks
  target, source = target[order], source[order]
  return np.stack([flat[target], flat[source], seq[target]], axis=1).astype(np.int32)


def context_pairs(encoded: Sequence[np.ndarray], extra: np.ndarray,
                  keep_probability: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """[P, 3] (target, input, sequence): each kept track occurrence with its
  extra tokens, both ways.

  Args:
    extra: [V, T] int32 extra-token indices of each vocabulary entry, -1 padded.
  """
  if not encoded or extra.shape[1] == 0:
    return np.zeros((0, 3), np.int32)
  flat = np.concatenate(encoded)
  seq = np.repeat(np.arange(len(encoded)), [len(e) for e in encoded])
  keep = rng.random(len(flat)) < keep_probability[flat]
  flat, seq = flat[keep], seq[keep]
  tokens = extra[flat]                                   # [P, T]
  valid = tokens >= 0
  track = np.broadcast_to(flat[:, None], tokens.shape)[valid]
  seq = np.broadcast_to(seq[:, None], tokens.shape)[valid]
  tokens = tokens[valid]
  return np.concatenate([np.stack([track, tokens, seq], 1), np.stack([tokens, track, seq], 1)]
                        ).astype(np.int32)


def job_learning_rates(lengths: Sequence[int], *, epochs: int, batch_words: int,
                       learning_rate: float, min_learning_rate: float) -> np.ndarray:
  """[epochs, S] the learning rate of each sequence in each epoch, as gensim sets it.

  Sequences are grouped in order into jobs of at most `batch_words` raw
  tokens (a longer sequence is a job of its own); a job's rate is
  learning_rate - (learning_rate - min_learning_rate) * progress, progress =
  (epoch + sequences before the job in this epoch / S) / epochs: gensim's
  `Word2Vec._job_producer` with total_examples=S (what `Word2Vec(sentences)`
  passes), which counts progress in examples, not words.

  Args:
    lengths: [S] raw tokens of each sequence, every sequence of the corpus
      (gensim counts the ones too short to train on as well).
  """
  lengths = np.asarray(lengths, np.int64)
  if epochs < 1 or batch_words < 1:
    raise ValueError(f"epochs={epochs}, batch_words={batch_words}: expected both >= 1")
  total = max(len(lengths), 1)
  start_of_job = np.zeros(len(lengths), np.int64)  # sequences pushed before each one's job
  pushed, in_job_tokens, in_job = 0, 0, 0
  for index, length in enumerate(lengths):
    if in_job_tokens + length > batch_words and in_job:
      pushed += in_job
      in_job_tokens, in_job = 0, 0
    start_of_job[index] = pushed
    in_job_tokens += length
    in_job += 1
  progress = (np.arange(epochs)[:, None] + start_of_job[None] / total) / epochs
  return (learning_rate - (learning_rate - min_learning_rate) * progress).astype(np.float32)


# ------------------------------------------------------------------ model and update


def init_params(rng, vocab_size: int, dim: int) -> dict[str, jax.Array]:
  """gensim 4's start: inputs U(-1, 1) / dim, outputs 0.

  (word2vec.c and gensim 3 drew U(-0.5, 0.5) / dim: half the scale, and a
  visibly slower start at the same learning rate.)
  """
  return {"input": jax.random.uniform(rng, (vocab_size, dim), minval=-1.0, maxval=1.0) / dim,
          "output": jnp.zeros((vocab_size, dim), jnp.float32)}


def sgns_loss(params, *, target, source, negatives, weight):
  """Skip-gram negative-sampling loss, weighted and summed over a batch of pairs.

  Args:
    params: "input" [V, d] and "output" [V, d] vectors.
    target: [B] int32 the predicted token i (its output vector).
    source: [B] int32 the observed token j (its input vector).
    negatives: [B, K] int32 tokens drawn from the unigram^0.75 table.
    weight: [B] float32 each pair's weight (its learning rate in `train`;
      0 for padding).

  Returns:
    (loss, metrics): sum_b weight_b loss_b, and the unweighted mean loss of
    the pairs with weight > 0 ("loss_per_pair").
  """
  v = params["input"][source]                                        # [B, d]
  positive = jnp.einsum("bd,bd->b", params["output"][target], v)
  negative = jnp.einsum("bkd,bd->bk", params["output"][negatives], v)
  use = (negatives != target[:, None]).astype(v.dtype)  # gensim skips the target
  per_pair = -jax.nn.log_sigmoid(positive) - jnp.sum(use * jax.nn.log_sigmoid(-negative), -1)
  real = (weight > 0).astype(per_pair.dtype)
  return jnp.sum(weight * per_pair), {
      "loss_per_pair": jnp.sum(real * per_pair) / jnp.maximum(jnp.sum(real), 1.0)}


def _draw_negatives(key, table, shape):
  """Negatives by bisecting the cumulative table, as gensim does."""
  draw = jax.random.randint(key, shape, 0, table[-1], dtype=jnp.int32)
  return jnp.searchsorted(table, draw, side="left").astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("negative",), donate_argnums=(0,))
def _update_chunk(state, pairs, rates, table, key, *, negative):
  """Applies a chunk of updates: pairs [S, B, 2] (target, input), rates [S, B].

  Each pair's learning rate is its loss weight and the step is p - grad (SGD
  of rate 1), so the rates are data and every run of a shape shares one
  compile.
  """

  def step(state, batch):
    params, step_index = state
    pair, rate = batch
    negatives = _draw_negatives(jax.random.fold_in(key, step_index), table,
                                (pair.shape[0], negative))
    grads, metrics = jax.grad(lambda p: sgns_loss(
        p, target=pair[:, 0], source=pair[:, 1], negatives=negatives, weight=rate),
                              has_aux=True)(params)
    params = jax.tree.map(lambda p, g: p - g, params, grads)
    return (params, step_index + 1), metrics

  return jax.lax.scan(step, state, (pairs, rates))


# ------------------------------------------------------------------ training


@dataclasses.dataclass
class Item2Vec:
  """A trained model: the vocabulary and its input and output vectors."""
  vocabulary: Vocabulary
  input_vectors: np.ndarray   # [V, d] the embeddings
  output_vectors: np.ndarray  # [V, d]
  epoch_losses: list[float]   # mean loss per pair, per epoch
  dropped_sequences: int = 0  # sequences with nothing to train on (< 2 known tokens)

  def vectors(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """([N, d] input vectors, [N] bool known) of `ids`; unknown rows are 0."""
    index = self.vocabulary.index
    rows = np.asarray([index.get(t, -1) for t in ids])
    known = rows >= 0
    out = np.zeros((len(ids), self.input_vectors.shape[1]), np.float32)
    out[known] = self.input_vectors[rows[known]]
    return out, known

  def vectors_from_tokens(self, ids: Sequence[str], extra: Mapping[str, Sequence[str]]
                          ) -> tuple[np.ndarray, np.ndarray]:
    """`vectors`, with tracks it never saw placed at the mean unit vector of
    their known extra tokens (a cold track's composer, style, instruments).

    Returns:
      ([N, d] vectors, [N] bool has a vector).
    """
    vectors, known = self.vectors(ids)
    index = self.vocabulary.index
    unit = self.input_vectors / np.maximum(
        np.linalg.norm(self.input_vectors, axis=1, keepdims=True), 1e-12)
    for row in np.flatnonzero(~known):
      rows = [index[t] for t in extra.get(ids[row], ()) if t in index]
      if rows:
        vectors[row], known[row] = unit[rows].mean(0), True
    return vectors, known

  def most_similar(self, token: str, topn: int = 10) -> list[tuple[str, float]]:
    """The `topn` tokens of highest cosine to `token` (itself left out)."""
    unit = self.input_vectors / np.maximum(
        np.linalg.norm(self.input_vectors, axis=1, keepdims=True), 1e-12)
    row = self.vocabulary.index[token]
    cosine = unit @ unit[row]
    cosine[row] = -np.inf
    best = np.argsort(-cosine, kind="stable")[:topn]
    return [(self.vocabulary.tokens[i], float(cosine[i])) for i in best]


def _extra_table(vocabulary: Vocabulary, extra: Mapping[str, Sequence[str]]) -> np.ndarray:
  rows = [[vocabulary.index[t] for t in extra.get(token, ()) if t in vocabulary.index]
          for token in vocabulary.tokens]
  width = max((len(r) for r in rows), default=0)
  table = np.full((len(rows), width), -1, np.int32)
  for i, r in enumerate(rows):
    table[i, :len(r)] = r
  return table


def train(sequences: Sequence[Sequence[str]], config: Item2VecConfig = Item2VecConfig(), *,
          extra_tokens: Mapping[str, Sequence[str]] | None = None,
          log: Callable[[str], None] = print) -> Item2Vec:
  """Trains item2vec on `sequences` (lists of string ids).

  Args:
    sequences: listening sequences or playlists.
    config: the settings; config.extra_tokens says how `extra_tokens` enter.
    extra_tokens: id -> extra tokens of that track (`sequences.attribute_tokens`).
    log: where progress lines go.
  """
  if config.extra_tokens != "none" and not extra_tokens:
    raise ValueError(f"extra_tokens={config.extra_tokens!r} but no extra tokens were given")
  extra = extra_tokens if config.extra_tokens != "none" else {}
  counted = sequences_lib.with_inline_tokens(sequences, extra) if extra else sequences
  vocabulary = build_vocabulary(counted, config.min_count)
  walked = counted if config.extra_tokens == "inline" else sequences
  encoded = [vocabulary.encode(s) for s in walked]
  # gensim's learning-rate jobs hold every sequence, short ones included.
  rates = job_learning_rates([len(s) for s in walked], epochs=config.epochs,
                             batch_words=config.batch_words,
                             learning_rate=config.learning_rate,
                             min_learning_rate=config.min_learning_rate)
  extra_table = _extra_table(vocabulary, extra) if config.extra_tokens == "context" else None
  # A sequence trains if it has a window pair, or in "context" mode one track
  # to pair with its extra tokens.
  shortest = 1 if extra_table is not None else 2
  used = [i for i, e in enumerate(encoded) if len(e) >= shortest]
  dropped = len(encoded) - len(used)
  encoded, rates = [encoded[i] for i in used], rates[:, used]
  if not encoded:
    raise ValueError(f"no training pairs: all {dropped} sequences have fewer than "
                     f"{shortest} tokens in the vocabulary")
  keep = keep_probabilities(vocabulary.counts, config.sample)

  host = np.random.default_rng(config.seed)
  init_key, negative_key = jax.random.split(jax.random.key(config.seed))
  params = init_params(init_key, len(vocabulary), config.dim)
  state = (params, jnp.int32(0))
  table = jnp.asarray(cum_table(vocabulary.counts, config.ns_exponent), jnp.int32)
  log(f"item2vec: {len(vocabulary)} tokens, {len(encoded)} sequences ({dropped} dropped: "
      f"fewer than {shortest} tokens in the vocabulary), {config.epochs} epochs")
  # One chunk shape [S, B] for every call: a single compile.
  chunk_shape = (config.steps_per_call, config.batch_size)
  per_chunk = config.steps_per_call * config.batch_size
  epoch_losses, num_pairs = [], 0
  for epoch in range(config.epochs):
    # One epoch's pairs at a time: host memory does not grow with epochs.
    pairs = skipgram_pairs(encoded, keep, config.window, host)
    if extra_table is not None:
      pairs = np.concatenate([pairs, context_pairs(encoded, extra_table, keep, host)])
    num_pairs += len(pairs)
    num_chunks = -(-len(pairs) // per_chunk)
    padded = np.zeros((num_chunks * per_chunk, 2), np.int32)
    padded[:len(pairs)] = pairs[:, :2]
    pair_rates = np.zeros(num_chunks * per_chunk, np.float32)  # 0: padding
    pair_rates[:len(pairs)] = rates[epoch, pairs[:, 2]]
    total, count = 0.0, 0
    for chunk in range(num_chunks):
      part = slice(chunk * per_chunk, (chunk + 1) * per_chunk)
      chunk_rates = pair_rates[part].reshape(chunk_shape)
      state, metrics = _update_chunk(state, jnp.asarray(padded[part].reshape(*chunk_shape, 2)),
                                     jnp.asarray(chunk_rates), table, negative_key,
                                     negative=config.negative)
      real = (chunk_rates > 0).sum(1)
      total += float(np.sum(np.asarray(metrics["loss_per_pair"]) * real))
      count += int(real.sum())
    epoch_losses.append(total / max(count, 1))
    log(f"  epoch {epoch + 1}/{config.epochs}: {len(pairs)} pairs, "
        f"loss per pair {epoch_losses[-1]:.4f}")
  if not num_pairs:
    raise ValueError(f"no training pairs in {config.epochs} epochs of {len(encoded)} "
                     f"sequences (sample={config.sample} thinned them all)")
  params = jax.device_get(state[0])
  return Item2Vec(vocabulary=vocabulary, input_vectors=np.asarray(params["input"]),
                  output_vectors=np.asarray(params["output"]), epoch_losses=epoch_losses,
                  dropped_sequences=dropped)
