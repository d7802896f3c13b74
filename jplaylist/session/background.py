"""The slow background model of a listener's overall preference (WO2024043931A1).

Besides the per-session model trained on the current session's examples, the
patent keeps a slow model of the user's overall preference, learned across
their sessions, with tracks the user rejected fed back into it only weakly
(a skip says more about the moment than about long-term taste). The adaptive
strategy fuses its session scores with it (`strategies.score`, the "mix
ranker"), and every learner starts a session from it (`strategies.init_state`).

It is a function of what a service observes and nothing else: the tracks the
listener was served in earlier sessions and how they reacted. With e_i the
(unit) embedding of observed track i and its outcome kind k_i,

  v = sum_i w(k_i) e_i,   w = 1 for LISTEN and LIKE (played past the majority),
                          w = -reject_weight for SKIP and DISLIKE,
                          w = 0 for PARTIAL (and any other kind),

  background = v / |v|, or the zero vector when |v| < MIN_NORM (nothing, or
  nothing decisive, was observed; a zero background contributes nothing).

`reject_weight` is much smaller than 1 (default 0.1, the ratio of the
in-session steps `reject_taste_rate / taste_rate` of `strategies.observe_track`,
which continues the same rule within the session with small steps). The sum
runs over every earlier session with equal weight: the model moves slowly,
each session adding its E tracks to all those before.

The simulator draws the earlier sessions (`simulator.SessionPlan.history_*`);
`from_history` reads them for one listener and `background_models` for many
(jitted, vmapped over listeners).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jplaylist.session import examples

# Weight of a rejected (skipped or disliked) track against a listened one.
REJECT_WEIGHT = 0.1
# |v| under which nothing decisive was observed and the model is zero.
MIN_NORM = 1e-6


def event_weights(kinds, reject_weight=REJECT_WEIGHT):
  """[...] int kinds -> [...] float32 w(k): 1 accepted, -reject_weight rejected, else 0."""
  kinds = jnp.asarray(kinds)
  accepted = (kinds == examples.LISTEN) | (kinds == examples.LIKE)
  rejected = (kinds == examples.SKIP) | (kinds == examples.DISLIKE)
  return (accepted.astype(jnp.float32)
          - jnp.asarray(reject_weight, jnp.float32) * rejected.astype(jnp.float32))


def background_model(track_embeddings, kinds, *, reject_weight=REJECT_WEIGHT):
  """The background model from observed tracks.

  Args:
    track_embeddings: [M, d] embeddings of the tracks observed (any order).
    kinds: [M] int outcome kinds (`examples` LISTEN, SKIP, LIKE, DISLIKE,
      PARTIAL).
    reject_weight: [] weight of a rejected track's push away (>= 0, << 1).

  Returns:
    [d] float32, unit norm, or zeros when nothing decisive was observed.
  """
  weights = event_weights(kinds, reject_weight)
  v = weights @ jnp.asarray(track_embeddings, jnp.float32)
  norm = jnp.linalg.norm(v)
  return jnp.where(norm >= MIN_NORM, v / jnp.maximum(norm, MIN_NORM), 0.0)


def from_history(library_embeddings, history_track, history_kind, *,
                 reject_weight=REJECT_WEIGHT):
  """One listener's background model from their earlier sessions.

  Args:
    library_embeddings: [N, d] track embeddings.
    history_track: [H, E] int track ids served in the H earlier sessions.
    history_kind: [H, E] int the listener's outcome kinds.
    reject_weight: see `background_model`.

  Returns:
    [d] float32 (zero when H = 0).
  """
  size = int(np.prod(jnp.shape(history_track)))  # not -1: H may be 0
  return background_model(library_embeddings[jnp.reshape(history_track, (size,))],
                          jnp.reshape(history_kind, (size,)), reject_weight=reject_weight)


@jax.jit
def _batched(library_embeddings, history_track, history_kind, reject_weight):
  return jax.vmap(lambda t, k: from_history(library_embeddings, t, k,
                                            reject_weight=reject_weight))(
      history_track, history_kind)


def background_models(library_embeddings, history_track, history_kind, *,
                      reject_weight=REJECT_WEIGHT):
  """[B, d] background models of B listeners ([B, H, E] tracks and kinds).

  Raises:
    ValueError: shapes disagree or reject_weight is negative.
  """
  if jnp.shape(history_track) != jnp.shape(history_kind) or jnp.ndim(history_track) != 3:
    raise ValueError(f"history_track {jnp.shape(history_track)} and history_kind "
                     f"{jnp.shape(history_kind)}: expected the same shape [B, H, E]")
  if not float(reject_weight) >= 0:
    raise ValueError(f"reject_weight={reject_weight}: expected >= 0")
  return _batched(library_embeddings, history_track, history_kind,
                  jnp.asarray(reject_weight, jnp.float32))
