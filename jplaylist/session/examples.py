"""Session examples Z_T = {(X_i, Y_i, A_i)} and their weights (WO2024043931A1).

During a listening session the patent's per-session model is trained on the
user's preferences so far. After event T the session holds examples

  X_i  the embedding: the audio embedding of a track the user listened to,
       skipped, liked or disliked, or the text embedding of a natural-language
       request ("something calmer"), both in the joint audio-text space;
  Y_i  1 for tracks played for the majority of their length, likes and every
       text request; 0 for early skips (played under `skip_threshold`, 5% by
       default) and dislikes;
  A_i  1 for audio, 0 for text.

Tracks played between the skip threshold and the majority are PARTIAL: kept
in the history (they were played) but weighted 0, so no learner sees them.

`History` keeps them in fixed-size buffers of `max_examples` slots with a mask
so sessions can be padded, stacked and vmapped; `weights` turns the
configurable `WeightRules` (text above behaviour, likes above plain listens,
recent above old by position and/or elapsed time) into per-example weights.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

# Example kinds (`History.kind`).
LISTEN, SKIP, LIKE, DISLIKE, TEXT, PARTIAL = 0, 1, 2, 3, 4, 5
KIND_NAMES = ("listen", "skip", "like", "dislike", "text", "partial")
# Y of each kind; PARTIAL's label is never used (its weight is 0).
LABEL_OF_KIND = (1.0, 0.0, 1.0, 0.0, 1.0, 0.0)


@flax.struct.dataclass
class History:
  """One session's examples in `max_examples` slots; batch by stacking.

  Attributes:
    x: [T, d] float32 example embeddings (audio track or text request).
    label: [T] float32 Y in {0, 1}.
    is_audio: [T] float32 A: 1 audio, 0 text.
    kind: [T] int32 LISTEN, SKIP, LIKE, DISLIKE, TEXT or PARTIAL.
    step: [T] int32 event index at which the example was added.
    time: [T] float32 elapsed session seconds when it was added.
    mask: [T] bool, slot used.
    num_dropped: [] int32 appends that found the buffer full (and were
      dropped); callers size T so this stays 0 and can check it afterwards.
  """
  x: jax.Array
  label: jax.Array
  is_audio: jax.Array
  kind: jax.Array
  step: jax.Array
  time: jax.Array
  mask: jax.Array
  num_dropped: jax.Array

  @classmethod
  def empty(cls, max_examples: int, dim: int) -> History:
    """An empty history of `max_examples` slots of `dim`-dimensional examples."""
    t = max_examples
    return cls(x=jnp.zeros((t, dim), jnp.float32),
               label=jnp.zeros((t,), jnp.float32),
               is_audio=jnp.zeros((t,), jnp.float32),
               kind=jnp.full((t,), PARTIAL, jnp.int32),
               step=jnp.zeros((t,), jnp.int32),
               time=jnp.zeros((t,), jnp.float32),
               mask=jnp.zeros((t,), bool),
               num_dropped=jnp.zeros((), jnp.int32))

  @property
  def max_examples(self) -> int:
    return self.mask.shape[-1]

  @property
  def num_examples(self) -> jax.Array:
    """[] int32 slots used."""
    return jnp.sum(self.mask, axis=-1, dtype=jnp.int32)

  def append(self, x, label, is_audio, kind, step, time, valid=True) -> History:
    """Writes one example into the first free slot (pure; jit/vmap friendly).

    Args:
      x: [d] embedding.
      label: [] Y in {0, 1}.
      is_audio: [] 1 for audio, 0 for text.
      kind: [] int32 example kind.
      step: [] int32 event index.
      time: [] float32 elapsed session seconds.
      valid: [] bool; False makes the call a no-op (an event that adds no
        example, e.g. no text request at this step), so a scan can call
        `append` unconditionally.

    Returns:
      The new history. With every slot used the example is not written and
      `num_dropped` counts it.
    """
    valid = jnp.asarray(valid, bool)
    slot = self.num_examples
    fits = slot < self.max_examples
    write = valid & fits
    # Out of range (full buffer, or an invalid write) goes to slot T: dropped.
    index = jnp.where(write, slot, self.max_examples)
    put = lambda buf, v: buf.at[index].set(jnp.asarray(v, buf.dtype), mode="drop")
    return self.replace(
        x=put(self.x, x), label=put(self.label, label),
        is_audio=put(self.is_audio, is_audio), kind=put(self.kind, kind),
        step=put(self.step, step), time=put(self.time, time),
        mask=put(self.mask, True),
        num_dropped=self.num_dropped + (valid & ~fits).astype(jnp.int32))

  def append_text(self, x, step, time, valid=True) -> History:
    """A natural-language request: text example, label 1."""
    return self.append(x, 1.0, 0.0, TEXT, step, time, valid)

  def append_track(self, x, kind, step, time, valid=True) -> History:
    """A track the user reacted to; the label follows from `kind`."""
    label = jnp.asarray(LABEL_OF_KIND, jnp.float32)[kind]
    return self.append(x, label, 1.0, kind, step, time, valid)


def play_kind(played_fraction, liked=False, disliked=False, *,
              skip_threshold=0.05, majority=0.5):
  """Kind of a played track from the fraction played and explicit feedback.

  Args:
    played_fraction: [...] fraction of the track played, in [0, 1].
    liked, disliked: [...] bool explicit feedback (a like wins over a dislike).
    skip_threshold: played under this fraction is an early SKIP (label 0).
    majority: played over this fraction is a LISTEN (label 1); in between is
      PARTIAL (weight 0).

  Returns:
    [...] int32 kind.
  """
  fraction = jnp.asarray(played_fraction, jnp.float32)
  kind = jnp.where(fraction < skip_threshold, SKIP,
                   jnp.where(fraction > majority, LISTEN, PARTIAL))
  kind = jnp.where(disliked, DISLIKE, kind)
  return jnp.where(liked, LIKE, kind).astype(jnp.int32)


@flax.struct.dataclass
class WeightRules:
  """Per-example weight rules; float32 scalars so a sweep can vmap over them.

  weight_i = kind_weight[kind_i] * recency_decay ** (now_step - step_i)
             * 0.5 ** ((now_time - time_i) / time_half_life_s)
  """
  text_weight: jax.Array = 3.0
  like_weight: jax.Array = 2.0
  listen_weight: jax.Array = 1.0
  skip_weight: jax.Array = 1.0
  dislike_weight: jax.Array = 2.0
  recency_decay: jax.Array = 0.85  # per event of age; 1.0 turns it off
  time_half_life_s: jax.Array = float("inf")  # inf turns it off

  @classmethod
  def create(cls, **overrides) -> WeightRules:
    """Defaults as float32 arrays, overridden by keyword."""
    values = {f: getattr(cls(), f) for f in cls.__dataclass_fields__}
    values.update(overrides)
    return cls(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})


def kind_weights(rules: WeightRules) -> jax.Array:
  """[6] weight of each kind, PARTIAL last (0)."""
  return jnp.stack([jnp.asarray(w, jnp.float32) for w in (
      rules.listen_weight, rules.skip_weight, rules.like_weight,
      rules.dislike_weight, rules.text_weight, 0.0)])


def weights(history: History, rules: WeightRules, now_step, now_time=0.0) -> jax.Array:
  """Per-example weights: kind rule x recency by position x recency by time.

  Args:
    history: one session (vmap for a batch).
    rules: weight rules.
    now_step: [] current event index; an example added at `now_step` has age 0.
    now_time: [] current elapsed session seconds (used only with a finite
      `time_half_life_s`).

  Returns:
    [T] float32, 0 on unused and PARTIAL slots.
  """
  base = kind_weights(rules)[history.kind]
  age = jnp.maximum(jnp.asarray(now_step, jnp.float32) - history.step, 0.0)
  by_position = jnp.power(jnp.asarray(rules.recency_decay, jnp.float32), age)
  elapsed = jnp.maximum(jnp.asarray(now_time, jnp.float32) - history.time, 0.0)
  # elapsed / inf = 0 for every finite elapsed time: the rule is off.
  by_time = jnp.exp2(-elapsed / jnp.asarray(rules.time_half_life_s, jnp.float32))
  return jnp.where(history.mask, base * by_position * by_time, 0.0)


def evidence(history: History) -> jax.Array:
  """[] float32 number of labelled examples (used slots that are not PARTIAL).

  The amount of evidence that drives the hand-over from nearest-neighbour
  retrieval to the classifier and the fusion weight of the long-term ranker.
  """
  labelled = history.mask & (history.kind != PARTIAL)
  return jnp.sum(labelled, axis=-1).astype(jnp.float32)
