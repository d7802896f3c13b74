"""Session examples Z_T = {(X_i, Y_i, A_i)} and their weights (WO2024043931A1).

During a listening session the patent's per-session model is trained on the
user's preferences so far. After event T the session holds examples

  X_i  the embedding: the audio embedding of a track the user listened to,
       skipped, liked or disliked, or the text embedding of a natural-language
       request ("something calmer"), both in the joint audio-text space;
  Y_i  1 for tracks played for the majority of their length, likes and
       positive text requests ("more flute"); 0 for early skips (played under
       `skip_threshold`, 5% by default), dislikes and negative requests ("less
       piano", see `jplaylist.session.requests`);
  A_i  1 for audio, 0 for text.

Tracks played between the skip threshold and the majority are PARTIAL: kept
in the history (they were played) but weighted 0, so no learner sees them.

`History` keeps them in fixed-size buffers of `max_examples` slots with a mask
so sessions can be padded, stacked and vmapped. A full buffer is a ring: the
next example overwrites the oldest one (the newest is never lost), and
`num_dropped` counts the examples that no longer fit. `weights` turns the
configurable `WeightRules` (text above behaviour, likes above plain listens,
recent above old by position and/or elapsed time) into per-example weights;
slots carry their event index and time, so their order in the ring does not
matter.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

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
    num_dropped: [] int32 examples that no longer fit: each append to a full
      buffer evicts the oldest example (slot `next_slot`) and counts it here.
      A study that means to keep every example sizes T so this stays 0 and
      checks it afterwards.
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

  @property
  def next_slot(self) -> jax.Array:
    """[] int32 slot the next append writes: the first free one, else the oldest.

    Slots fill in order 0..T-1 and then wrap, so after n appends the next goes
    to n mod T, and n = num_examples + num_dropped.
    """
    return (self.num_examples + self.num_dropped) % self.max_examples

  def append(self, x, label, is_audio, kind, step, time, valid=True) -> History:
    """Writes one example into `next_slot` (pure; jit/vmap friendly).

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
      The new history. With every slot used the oldest example is
      overwritten and `num_dropped` counts it.
    """
    valid = jnp.asarray(valid, bool)
    full = self.num_examples >= self.max_examples
    # An invalid write goes to slot T: dropped by the scatter.
    index = jnp.where(valid, self.next_slot, self.max_examples)
    put = lambda buf, v: buf.at[index].set(jnp.asarray(v, buf.dtype), mode="drop")
    return self.replace(
        x=put(self.x, x), label=put(self.label, label),
        is_audio=put(self.is_audio, is_audio), kind=put(self.kind, kind),
        step=put(self.step, step), time=put(self.time, time),
        mask=put(self.mask, True),
        num_dropped=self.num_dropped + (valid & full).astype(jnp.int32))

  def append_text(self, x, step, time, valid=True, label=1.0) -> History:
    """A natural-language request: text example (A = 0).

    label 1.0 for a positive request ("more flute"), 0.0 for a negative one
    ("less piano": x embeds "piano"; see `jplaylist.session.requests`). Both
    are weighted by `WeightRules.text_weight`.
    """
    return self.append(x, label, 0.0, TEXT, step, time, valid)

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

  Two recency rules, so a study can ablate one against the other: by
  position (events since the example, `recency_decay` per event; default
  0.85, the patent's "recent above old") and by elapsed session time
  (`time_half_life_s`; default inf, off). Time decay is off by default
  because position already orders the examples and one rule at a time keeps
  the ablation clean: `recency_decay=1.0, time_half_life_s=600` is the
  time-only variant. Time decay differs from position where plays differ in
  length: ten quick skips age a listen by seconds, not by ten events.
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
    """Defaults as float32 arrays, overridden by keyword (checked when concrete)."""
    values = {f: getattr(cls(), f) for f in cls.__dataclass_fields__}
    unknown = set(overrides) - set(values)
    if unknown:
      raise ValueError(f"unknown weight rules {sorted(unknown)}; known: {sorted(values)}")
    values.update(overrides)
    check_values(values, RULE_BOUNDS)
    return cls(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})


# Allowed ranges of settings: name -> (low, high, low is allowed). A value
# outside would give NaN weights (0 ** 0 at a zero decay, 0 / 0 at a zero
# half-life) or invert a rule.
RULE_BOUNDS = {"text_weight": (0.0, np.inf, True), "like_weight": (0.0, np.inf, True),
               "listen_weight": (0.0, np.inf, True), "skip_weight": (0.0, np.inf, True),
               "dislike_weight": (0.0, np.inf, True), "recency_decay": (0.0, 1.0, False),
               "time_half_life_s": (0.0, np.inf, False)}


def check_values(values: dict, bounds: dict) -> None:
  """Raises ValueError naming a setting outside its range (traced values pass).

  Args:
    values: name -> scalar or array (a stacked sweep is checked elementwise).
    bounds: name -> (low, high, low_inclusive); high is inclusive; names
      missing here are not checked.
  """
  for name, value in values.items():
    if name not in bounds:
      continue
    try:
      array = np.asarray(value, np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
      continue  # inside jit or vmap: the caller checked the concrete values
    low, high, low_inclusive = bounds[name]
    above = array >= low if low_inclusive else array > low
    if not np.all(above & (array <= high)):
      bracket = "[" if low_inclusive else "("
      raise ValueError(f"{name}={value!r} is outside {bracket}{low}, {high}]")


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

  The amount of evidence that sets the fusion weight of the long-term ranker.
  """
  labelled = history.mask & (history.kind != PARTIAL)
  return jnp.sum(labelled, axis=-1).astype(jnp.float32)

