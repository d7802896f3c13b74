"""Listening sequences and playlists: where item2vec and MF get their data.

A sequence is a list of string ids in listening (or playlist) order. Sources:

  `read_playlists`   a user file, one playlist per line, whitespace-separated
                     ids; blank lines and lines starting with '#' are skipped
                     and counted.
  `from_history`     the session simulator's listeners
                     (`jplaylist.session.simulator.sample_sessions`): each
                     listener's `history_sessions` earlier sessions, the tracks
                     they listened to (LISTEN or LIKE: played past the
                     majority) in the order they were served.

`attribute_tokens` turns a library's metadata (composer, style, instruments)
into extra tokens per track ("composer=Palestrina") so that tracks, artists
and words share one embedding space (`with_inline_tokens`, or item2vec's
"context" mode). `split` holds out whole sequences; `drop_tracks` removes
tracks from training sequences so a cold-start set exists.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from jplaylist.session import examples

# Outcomes that count as "listened" (played past the majority).
LISTENED_KINDS = (examples.LISTEN, examples.LIKE)
_WHITESPACE = re.compile(r"\s+")


def read_playlists(path: str) -> tuple[list[list[str]], dict[str, int]]:
  """Playlists from a text file, one per line, whitespace-separated ids.

  Returns:
    (playlists, counts): counts has "lines", "playlists", "blank" and
    "comment" (lines skipped) and "items".
  """
  playlists, counts = [], dict(lines=0, playlists=0, blank=0, comment=0, items=0)
  with open(path, encoding="utf-8") as f:
    for line in f:
      counts["lines"] += 1
      text = line.strip()
      if not text:
        counts["blank"] += 1
      elif text.startswith("#"):
        counts["comment"] += 1
      else:
        playlists.append(text.split())
        counts["items"] += len(playlists[-1])
  counts["playlists"] = len(playlists)
  if not playlists:
    raise ValueError(f"{path}: no playlists ({counts['lines']} lines, {counts['blank']} "
                     f"blank, {counts['comment']} comments)")
  return playlists, counts


def from_history(history_track, history_kind, track_ids: Sequence[str], *,
                 listened_kinds: Sequence[int] = LISTENED_KINDS,
                 min_length: int = 1) -> tuple[list[list[str]], np.ndarray]:
  """The simulated listeners' earlier sessions as sequences of listened tracks.

  Args:
    history_track: [B, H, E] int library rows served in each of B listeners'
      H earlier sessions (`SessionPlan.history_track`).
    history_kind: [B, H, E] int outcome of each (`SessionPlan.history_kind`).
    track_ids: N ids of the library rows.
    listened_kinds: outcomes kept (default LISTEN and LIKE).
    min_length: sessions with fewer listened tracks are left out.

  Returns:
    (sequences, listener): the kept sessions in (listener, session) order, and
    [S] int the listener each came from.
  """
  tracks, kinds = np.asarray(history_track), np.asarray(history_kind)
  if tracks.shape != kinds.shape or tracks.ndim != 3:
    raise ValueError(f"history_track {tracks.shape} and history_kind {kinds.shape}: "
                     "expected equal [B, H, E] shapes")
  listened = np.isin(kinds, np.asarray(listened_kinds))
  ids = np.asarray(track_ids)
  sequences, listener = [], []
  for b in range(tracks.shape[0]):
    for h in range(tracks.shape[1]):
      rows = tracks[b, h][listened[b, h]]
      if len(rows) >= min_length:
        sequences.append(ids[rows].tolist())
        listener.append(b)
  return sequences, np.asarray(listener, np.int64)


def simulate(world, rng, num_listeners: int, *, min_length: int = 2,
             batch_size: int = 256) -> tuple[list[list[str]], np.ndarray]:
  """Draws `num_listeners` simulated listeners; their earlier sessions as sequences.

  Each listener has `world.config.history_sessions` earlier sessions (the
  service's seeded playlist served in order, the listener reacting under its
  listener model); see `from_history`.
  """
  # Imported here: the simulator pulls in the session engine, which the
  # playlist-file path never needs.
  from jplaylist.session import simulator  # pylint: disable=g-import-not-at-top
  if world.config.history_sessions < 1:
    raise ValueError("world.config.history_sessions must be >= 1 to give sequences")
  plan = simulator.sample_sessions(rng, num_listeners, world, batch_size=batch_size)
  return from_history(plan.history_track, plan.history_kind, world.library.info.ids,
                      min_length=min_length)


def attribute_tokens(ids: Sequence[str], attributes: Sequence[Mapping[str, Any]],
                     names: Sequence[str]) -> dict[str, list[str]]:
  """Extra tokens per track from its metadata: "name=value" for each attribute.

  A list value gives one token per item ("instruments=flute"); None, "" and
  missing values give none. Runs of whitespace in values (spaces, tabs,
  newlines) become one underscore, so a token never splits when written to a
  playlist file.
  """
  out = {}
  for track, record in zip(ids, attributes):
    tokens = []
    for name in names:
      value = record.get(name)
      values = value if isinstance(value, (list, tuple)) else [value]
      tokens += [f"{name}={_WHITESPACE.sub('_', str(v))}" for v in values
                 if v is not None and str(v) != ""]
    out[track] = tokens
  return out


def with_inline_tokens(sequences: Iterable[Sequence[str]],
                       extra: Mapping[str, Sequence[str]]) -> list[list[str]]:
  """Each track followed by its extra tokens, so they share its contexts."""
  return [[token for track in seq for token in (track, *extra.get(track, ()))]
          for seq in sequences]


def split(sequences: Sequence[Sequence[str]], holdout_fraction: float, seed: int, *,
          min_test_length: int = 2) -> tuple[list[list[str]], list[list[str]]]:
  """(train, test): a random `holdout_fraction` of the sequences held out whole.

  Only sequences of at least `min_test_length` items can be held out (the
  next-track task needs a context and a target); the rest all train.
  """
  if not 0.0 <= holdout_fraction < 1.0:
    raise ValueError(f"holdout_fraction={holdout_fraction}: expected in [0, 1)")
  eligible = np.flatnonzero([len(s) >= min_test_length for s in sequences])
  rng = np.random.default_rng(seed)
  chosen = rng.choice(eligible, int(round(holdout_fraction * len(eligible))), replace=False)
  held = np.zeros(len(sequences), bool)
  held[chosen] = True
  train = [list(s) for s, h in zip(sequences, held) if not h]
  test = [list(s) for s, h in zip(sequences, held) if h]
  return train, test


def drop_tracks(sequences: Iterable[Sequence[str]], tracks: Iterable[str]
                ) -> tuple[list[list[str]], int]:
  """Sequences without `tracks` (empty ones left out), and how many items went."""
  gone = set(tracks)
  out, removed = [], 0
  for seq in sequences:
    kept = [t for t in seq if t not in gone]
    removed += len(seq) - len(kept)
    if kept:
      out.append(kept)
  return out, removed


def choose_cold_tracks(track_ids: Sequence[str], fraction: float, seed: int) -> list[str]:
  """A random `fraction` of the tracks, to be kept out of every training sequence."""
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"cold_fraction={fraction}: expected in [0, 1)")
  rng = np.random.default_rng(seed)
  count = int(round(fraction * len(track_ids)))
  return [track_ids[i] for i in np.sort(rng.choice(len(track_ids), count, replace=False))]
