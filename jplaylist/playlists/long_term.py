"""Item2vec or MF of the listeners' earlier sessions as the study's long-term ranker.

Issue 15, deliverable 3: the patent's "mix ranker", the long-term model that
the adaptive strategy fuses its in-session scores with, learned the way a
service learns it, from what its listeners played before. `fit` reads only
the earlier sessions a plan draws (`SessionPlan.history_track` and
`history_kind`, the tracks served and the listener's outcomes), never the
studied sessions nor the simulator's hidden state, and returns the factorised
ranker the session engine scores (`jplaylist.session.long_term.LongTerm`):

  item2vec  `item2vec.train` on each earlier session's listened tracks (one
            sequence per session, in served order); items are the tracks'
            unit vectors, a listener's vector the normalised mean of the
            unit vectors of the tracks they listened to in their earlier
            sessions, so a score is the cosine between the track and that
            mean.
  mf        `als.fit_sequences` with one user per listener (their earlier
            sessions' listened tracks, plays counted); items are the item
            factors, a listener's vector their history folded in
            (`als.fold_in`), so a score is x_u . y_i.

Tracks in no training sequence have a zero row and `known` False; the engine
gives them the mean score of the seen candidates (neutral once standardised).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from jplaylist.playlists import als
from jplaylist.playlists import item2vec
from jplaylist.playlists import sequences as sequences_lib
from jplaylist.session import long_term as long_term_lib

LEARNED = ("item2vec", "mf")


def _listened_rows(history_track, history_kind) -> list[np.ndarray]:
  """Per listener, the rows of every track listened to in their earlier sessions."""
  tracks, kinds = np.asarray(history_track), np.asarray(history_kind)
  listened = np.isin(kinds, np.asarray(sequences_lib.LISTENED_KINDS))
  return [tracks[b][listened[b]].astype(np.int64) for b in range(tracks.shape[0])]


def _unit(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def fit(kind: str, track_ids: Sequence[str], history_track, history_kind,
        settings: Mapping[str, Any] | None = None, *, seed: int = 0,
        log: Callable[[str], None] = print) -> tuple[long_term_lib.LongTerm, dict]:
  """Trains the long-term ranker on a plan's earlier sessions.

  Args:
    kind: "item2vec" or "mf".
    track_ids: N ids of the library rows (item2vec's tokens).
    history_track: [B, H, E] int library rows served in each session's
      listener's H earlier sessions (`SessionPlan.history_track`).
    history_kind: [B, H, E] int their outcomes (`SessionPlan.history_kind`).
    settings: item2vec: `item2vec.Item2VecConfig` fields; mf:
      `als.fit_sequences` keywords (factors, regularization, alpha,
      iterations). None: the defaults.
    seed: the training's seed.
    log: where progress lines go.

  Returns:
    (ranker with users [B, F] in the plan's session order, stats: "kind",
    "sequences", "items" (training tokens), "known_tracks", "listeners_without_history").

  Raises:
    ValueError: an unknown kind or setting, or shapes that disagree.
  """
  if kind not in LEARNED:
    raise ValueError(f"long_term={kind!r}: a learned ranker is one of {LEARNED}")
  tracks, kinds = np.asarray(history_track), np.asarray(history_kind)
  if tracks.shape != kinds.shape or tracks.ndim != 3:
    raise ValueError(f"history_track {tracks.shape} and history_kind {kinds.shape}: expected "
                     "equal [B, H, E] shapes")
  if tracks.shape[1] == 0:
    raise ValueError("a learned long-term ranker needs earlier sessions: "
                     "sim.history_sessions is 0")
  num_tracks = len(track_ids)
  settings = dict(settings or {})
  per_listener = _listened_rows(tracks, kinds)
  if kind == "item2vec":
    fields = {f.name for f in dataclasses.fields(item2vec.Item2VecConfig)} - {"seed"}
    unknown = sorted(set(settings) - fields)
    if unknown:
      raise ValueError(f"long_term item2vec settings {unknown} are not Item2VecConfig "
                       f"fields {sorted(fields)}")
    sequences, _ = sequences_lib.from_history(tracks, kinds, track_ids)
    model = item2vec.train(sequences, item2vec.Item2VecConfig(**settings, seed=seed), log=log)
    vectors, known = model.vectors(track_ids)
    items = np.where(known[:, None], _unit(vectors), 0.0).astype(np.float32)
    users = np.stack([_unit(items[rows].sum(0)) if rows.size else
                      np.zeros(items.shape[1], np.float32) for rows in per_listener])
    num_items = sum(len(s) for s in sequences)
  else:
    allowed = ("factors", "regularization", "alpha", "iterations")
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
      raise ValueError(f"long_term mf settings {unknown}: expected some of {allowed}")
    sequences = [rows for rows in per_listener if rows.size]
    factors = als.fit_sequences(sequences, num_tracks, seed=seed, **settings)
    counts = np.bincount(np.concatenate(sequences), minlength=num_tracks) if sequences else (
        np.zeros(num_tracks, np.int64))
    known = counts > 0
    items = np.where(known[:, None], factors.item_factors, 0.0).astype(np.float32)
    users = als.fold_in(items, per_listener, regularization=factors.regularization,
                        alpha=factors.alpha).astype(np.float32)
    num_items = int(counts.sum())
    log(f"mf: {len(sequences)} listeners, {num_items} plays, {items.shape[1]} factors")
  ranker = long_term_lib.LongTerm(items=items, known=np.asarray(known, bool),
                                  users=np.asarray(users, np.float32), kind=kind)
  ranker.check(num_tracks, tracks.shape[0])
  stats = dict(kind=kind, sequences=len(sequences), items=int(num_items),
               known_tracks=int(np.sum(known)), num_tracks=num_tracks,
               listeners_without_history=int(sum(rows.size == 0 for rows in per_listener)))
  return ranker, stats
