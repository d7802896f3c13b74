"""The learned long-term ranker the adaptive strategy fuses with (the patent's mix ranker).

WO2024043931A1 fuses the in-session classifier with a long-term "mix ranker"
of the listener's overall preference. By default the study's is the
background direction (`background.from_history`, a [d] vector in the audio
space); a service would rather use a collaborative model of what its
listeners played: item2vec or matrix factorisation (issue 15, deliverable 3;
fitted by `jplaylist.playlists.long_term` on the listeners' earlier sessions
only). The session engine takes such a ranker as data, factorised:

  score(listener u, track n) = items[n] . users[u],

items [N, F] (one row per library track, zero for a track no training
sequence contains) and users [B, F] (one per session of the plan, built from
its listener's earlier sessions). Tracks never seen in training get a neutral
score: the mean score of the seen candidates, so that once the scores are
standardised over the candidates (`strategies.score`) they sit at 0, neither
promoted nor demoted. A listener with no usable history has a zero user
vector: every score is equal and the ranker contributes nothing, as a zero
background direction does.

This module imports no trainer: it holds the ranker's data and scores it.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

# The sources of the mix ranker a study can fuse with (config.long_term).
KINDS = ("background", "item2vec", "mf")


@flax.struct.dataclass
class LongTerm:
  """A learned long-term ranker over a plan's sessions.

  items: [N, F] float32 per library track (item2vec: unit vectors; MF: item
    factors); rows of unseen tracks are 0.
  known: [N] bool the track occurs in some training sequence.
  users: [B, F] float32 per session of the plan, from its listener's
    earlier sessions only.
  kind: "item2vec" or "mf" (static).
  """
  items: jax.Array
  known: jax.Array
  users: jax.Array
  kind: str = flax.struct.field(pytree_node=False, default="item2vec")

  def check(self, num_tracks: int, num_sessions: int) -> None:
    """Raises ValueError naming the field whose shape disagrees with the study."""
    items, known, users = (jnp.shape(x) for x in (self.items, self.known, self.users))
    if len(items) != 2 or items[0] != num_tracks:
      raise ValueError(f"long_term.items has shape {items}; expected [{num_tracks}, F] "
                       "(one row per library track)")
    if known != (num_tracks,):
      raise ValueError(f"long_term.known has shape {known}; expected [{num_tracks}]")
    if users != (num_sessions, items[1]):
      raise ValueError(f"long_term.users has shape {users}; expected [{num_sessions}, "
                       f"{items[1]}] (one row per session of the plan)")


def candidate_scores(items, known, user, cand=None):
  """[C] long-term scores of the candidates for one listener, unseen tracks neutral.

  Args:
    items: [N, F] item vectors (`LongTerm.items`).
    known: [N] bool seen in training.
    user: [F] the listener's vector.
    cand: [C] int candidate rows, or None for the whole library (C = N).

  Returns:
    [C] float32 items[cand] @ user, with unseen candidates at the mean score
    of the seen ones (0 when none is seen).
  """
  if cand is not None:
    items, known = items[cand], known[cand]
  raw = items @ user
  seen = known.astype(jnp.float32)
  neutral = jnp.sum(seen * raw) / jnp.maximum(jnp.sum(seen), 1.0)
  return jnp.where(known, raw, neutral)
