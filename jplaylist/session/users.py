"""Listeners with demographics, histories and liked/disliked tracks (issue 16, item 3).

The user-anchored metric learning of `trainers/user_anchored.py` needs users
the way a streaming service has them: a few demographic fields, a listening
history, and tracks the user liked or disliked. `simulate` draws them from a
`session.library.Library` the way the session simulator's "attributes"
listener has taste (`session/listeners.py`): a taste is a weight over the
library's attribute values (mood, tempo class, style, ...), never over an
audio embedding, so an audio model has something real to learn.

  demographics  each user belongs to one age band and one region (one-hot,
                `Users.demographics`); every band and every region has its
                own random taste over attribute values, and a group's taste is
                the sum of its band's and region's: taste is correlated with
                demographics, which is what the user branch can read from them;
  own taste     the user's taste is normalise(group taste) * group_weight +
                normalise(own deviation) * (1 - group_weight);
  affinity      a_un = taste_u . x_n / sqrt(attributes), x_n the one-hot code of
                track n's attribute values; the like probability is
                sigmoid(sharpness * (a_un - median_n a_un)), so each user likes
                about half of what they hear, more of what fits their taste;
  history       `history_length` tracks drawn without replacement with weights
                proportional to that probability (what the user listened to),
                only among tracks allowed in histories (not the held-out new
                tracks); no history track is also an interaction;
  interactions  the user hears tracks in a random order and likes each with
                its probability, until they have at least `min_liked` liked
                and `min_disliked` disliked and have heard `min_exposed`.

`load` reads the same from files a user supplies: interactions (user, track,
liked), demographics (user, then one column per categorical field) and an
optional listening history (user, track). `split` cuts a `Users` into the
trainer's parts: seen users' interactions 60/20/20 per user (per label), the
interactions of users held out entirely, and those of tracks held out
entirely (the cold-start case).
"""

from __future__ import annotations

import csv
import dataclasses
from typing import Sequence

import numpy as np

from jplaylist.session.library import Library, attribute_one_hot
from jplaylist.session.prototypes import NAME_ATTRIBUTES

AGE_BANDS = ("18-24", "25-34", "35-49", "50+")
REGIONS = ("north", "south", "west")


@dataclasses.dataclass(frozen=True)
class Users:
  """Users of a track library.

  Attributes:
    user_ids: U user ids.
    demographics: [U, G] float32 one-hot demographic codes.
    demographic_labels: G (field, value) pairs of the columns.
    history: U int32 arrays of track rows (the listening history).
    user: [I] int32 user row of each interaction.
    track: [I] int32 track row of each interaction.
    liked: [I] bool.
    track_ids: N track ids (rows of `track`).
    group: [U] int32 simulated demographic group (-1: unknown).
  """
  user_ids: tuple[str, ...]
  demographics: np.ndarray
  demographic_labels: tuple[tuple[str, str], ...]
  history: tuple[np.ndarray, ...]
  user: np.ndarray
  track: np.ndarray
  liked: np.ndarray
  track_ids: tuple[str, ...]
  group: np.ndarray

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  @property
  def num_tracks(self) -> int:
    return len(self.track_ids)


@dataclasses.dataclass(frozen=True)
class SimSettings:
  """How `simulate` draws users (see the module docstring)."""
  num_users: int = 200
  min_liked: int = 10
  min_disliked: int = 10
  min_exposed: int = 30
  history_length: int = 20
  group_weight: float = 0.7
  sharpness: float = 8.0
  seed: int = 0


def taste_features(library: Library, names: Sequence[str] = ()
                   ) -> tuple[np.ndarray, tuple[tuple[str, str], ...]]:
  """[N, F] attribute one-hot codes of the tracks, scaled by 1/sqrt(attributes).

  `names`: the attributes tastes are over; default those of
  `prototypes.NAME_ATTRIBUTES` the library has (mood, tempo class, style, ...).
  """
  names = list(names) or [n for n in NAME_ATTRIBUTES if n in library.attributes]
  if not names:
    raise ValueError(f"the library has none of the attributes {NAME_ATTRIBUTES}; "
                     f"name some of {sorted(library.attributes)}")
  codes, labels = attribute_one_hot(library, names)
  return codes / np.sqrt(len(names)), labels


def like_probabilities(taste: np.ndarray, features: np.ndarray, sharpness: float) -> np.ndarray:
  """[U, N] sigmoid(sharpness * (a_un - median_n a_un)), a = taste @ features.T."""
  affinity = taste @ features.T
  centred = affinity - np.median(affinity, axis=1, keepdims=True)
  return 1.0 / (1.0 + np.exp(-sharpness * centred))


def simulate(library: Library, settings: SimSettings = SimSettings(), *,
             attribute_names: Sequence[str] = (),
             history_tracks: np.ndarray | None = None) -> Users:
  """Simulated users of `library` (see the module docstring).

  Args:
    library: the tracks, with categorical attributes.
    settings: sizes and the seed.
    attribute_names: attributes tastes are over (default: `taste_features`).
    history_tracks: [N] bool, tracks that may appear in histories (default
      all); the trainer leaves its held-out new tracks out.

  Raises:
    ValueError: when the library is too small for `min_liked` + `min_disliked`
      interactions besides a history, naming the user and the settings.
  """
  features, _ = taste_features(library, attribute_names)
  num_tracks, num_features = features.shape
  rng = np.random.default_rng(settings.seed)
  band_taste = rng.standard_normal((len(AGE_BANDS), num_features))
  region_taste = rng.standard_normal((len(REGIONS), num_features))
  unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  band = rng.integers(0, len(AGE_BANDS), settings.num_users)
  region = rng.integers(0, len(REGIONS), settings.num_users)
  own = rng.standard_normal((settings.num_users, num_features))
  taste = (settings.group_weight * unit(band_taste[band] + region_taste[region])
           + (1.0 - settings.group_weight) * unit(own))
  probability = like_probabilities(taste, features, settings.sharpness)
  allowed = np.ones(num_tracks, bool) if history_tracks is None else np.asarray(history_tracks)
  histories, users, tracks, liked = [], [], [], []
  for u in range(settings.num_users):
    weights = probability[u] * allowed
    size = min(settings.history_length, int(np.count_nonzero(weights)))
    history = (rng.choice(num_tracks, size, replace=False, p=weights / weights.sum())
               if size else np.zeros(0, np.int64))
    histories.append(np.sort(history).astype(np.int32))
    heard = np.setdiff1d(np.arange(num_tracks), history)
    rng.shuffle(heard)
    outcome = rng.random(len(heard)) < probability[u, heard]
    liked_so_far = np.cumsum(outcome)
    disliked_so_far = np.cumsum(~outcome)
    enough = ((liked_so_far >= settings.min_liked) & (disliked_so_far >= settings.min_disliked)
              & (np.arange(1, len(heard) + 1) >= settings.min_exposed))
    if not enough.any():
      raise ValueError(
          f"user {u}: the library's {num_tracks} tracks (less a history of {size}) give "
          f"{int(liked_so_far[-1]) if len(heard) else 0} liked and "
          f"{int(disliked_so_far[-1]) if len(heard) else 0} disliked, short of min_liked="
          f"{settings.min_liked}, min_disliked={settings.min_disliked}; lower them or "
          f"history_length, or use a larger library")
    count = int(np.argmax(enough)) + 1
    users.append(np.full(count, u, np.int32))
    tracks.append(heard[:count].astype(np.int32))
    liked.append(outcome[:count])
  demographics = np.concatenate([np.eye(len(AGE_BANDS))[band], np.eye(len(REGIONS))[region]],
                                axis=1).astype(np.float32)
  return Users(
      user_ids=tuple(f"user-{u}" for u in range(settings.num_users)),
      demographics=demographics,
      demographic_labels=tuple([("age", a) for a in AGE_BANDS] + [("region", r) for r in REGIONS]),
      history=tuple(histories), user=np.concatenate(users), track=np.concatenate(tracks),
      liked=np.concatenate(liked), track_ids=tuple(library.info.ids),
      group=(band * len(REGIONS) + region).astype(np.int32))


# ----------------------------------------------------------------- files ----
_TRUE = ("1", "true", "yes", "liked", "like")
_FALSE = ("0", "false", "no", "disliked", "dislike")


def _read_csv(path: str, required: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    fields = [name.strip() for name in (reader.fieldnames or [])]
    missing = [name for name in required if name not in fields]
    if missing:
      raise ValueError(f"{path}: missing column(s) {missing}; it has {fields} "
                       f"(expected a header row with {list(required)})")
    rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            for row in reader]
  return fields, rows


def load(interactions_path: str, demographics_path: str, track_ids: Sequence[str], *,
         history_path: str | None = None) -> tuple[Users, dict[str, int]]:
  """Users from CSV files with a header row.

  Args:
    interactions_path: columns user, track, liked (1/0, true/false, yes/no).
    demographics_path: column user, then one column per categorical field
      (e.g. age, region), each one-hot coded; an empty cell is all 0.
    track_ids: the library's track ids; `track` refers to them.
    history_path: optional columns user, track: listening histories (none:
      every history is empty, and the user branch reads demographics only).

  Returns:
    (users, report): the report counts what was skipped and why (rows naming
    a track the library lacks, duplicate interactions: the first is kept).

  Raises:
    ValueError: naming the file, line and field of a bad value, a user with
      interactions but no demographics, or a missing column.
  """
  fields, rows = _read_csv(demographics_path, ["user"])
  demo_fields = [f for f in fields if f != "user"]
  user_ids, seen = [], set()
  for line, row in enumerate(rows, start=2):
    if not row["user"]:
      raise ValueError(f"{demographics_path}, line {line}: empty user")
    if row["user"] in seen:
      raise ValueError(f"{demographics_path}, line {line}: user {row['user']!r} again")
    seen.add(row["user"])
    user_ids.append(row["user"])
  labels = [(f, v) for f in demo_fields for v in sorted({r[f] for r in rows} - {""})]
  demographics = np.array([[float(row[f] == v) for f, v in labels] for row in rows],
                          np.float32).reshape(len(rows), len(labels))
  user_row = {u: i for i, u in enumerate(user_ids)}
  track_row = {t: i for i, t in enumerate(track_ids)}
  report = {"unknown_track_rows": 0, "duplicate_rows": 0, "history_unknown_track_rows": 0}

  _, rows = _read_csv(interactions_path, ["user", "track", "liked"])
  users, tracks, liked, pairs = [], [], [], set()
  no_demographics = []
  for line, row in enumerate(rows, start=2):
    value = row["liked"].lower()
    if value not in _TRUE + _FALSE:
      raise ValueError(f"{interactions_path}, line {line}: liked={row['liked']!r}; "
                       f"expected one of {_TRUE + _FALSE}")
    if row["user"] not in user_row:
      no_demographics.append(row["user"])
      continue
    if row["track"] not in track_row:
      report["unknown_track_rows"] += 1
      continue
    pair = (user_row[row["user"]], track_row[row["track"]])
    if pair in pairs:
      report["duplicate_rows"] += 1
      continue
    pairs.add(pair)
    users.append(pair[0])
    tracks.append(pair[1])
    liked.append(value in _TRUE)
  if no_demographics:
    missing = sorted(set(no_demographics))
    raise ValueError(f"{interactions_path}: {len(missing)} user(s) have interactions but no "
                     f"row in {demographics_path}, e.g. {missing[:5]}")
  histories = [[] for _ in user_ids]
  if history_path:
    _, rows = _read_csv(history_path, ["user", "track"])
    for line, row in enumerate(rows, start=2):
      if row["user"] not in user_row:
        raise ValueError(f"{history_path}, line {line}: user {row['user']!r} has no row in "
                         f"{demographics_path}")
      if row["track"] not in track_row:
        report["history_unknown_track_rows"] += 1
        continue
      histories[user_row[row["user"]]].append(track_row[row["track"]])
  return Users(
      user_ids=tuple(user_ids), demographics=demographics, demographic_labels=tuple(labels),
      history=tuple(np.unique(np.asarray(h, np.int32)) for h in histories),
      user=np.asarray(users, np.int32), track=np.asarray(tracks, np.int32),
      liked=np.asarray(liked, bool), track_ids=tuple(track_ids),
      group=np.full(len(user_ids), -1, np.int32)), report


# ---------------------------------------------------------------- splits ----
SPLIT_NAMES = ("train", "validation", "test", "unseen_users", "new_tracks",
               "new_tracks_unseen_users")


@dataclasses.dataclass(frozen=True)
class Split:
  """Interaction rows of each part (`SPLIT_NAMES`), and who and what is held out.

  Attributes:
    parts: name -> [I_part] int64 rows of `Users.user` / `track` / `liked`.
    unseen_user: [U] bool, users held out entirely.
    new_track: [N] bool, tracks held out entirely.
    history: U int32 arrays, each user's history without new tracks.
  """
  parts: dict[str, np.ndarray]
  unseen_user: np.ndarray
  new_track: np.ndarray
  history: tuple[np.ndarray, ...]


def split(users: Users, new_track: np.ndarray, *, unseen_fraction: float = 0.2,
          fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0) -> Split:
  """Seen users' interactions with known tracks cut `fractions` per user and
  per label (so each part has liked and disliked tracks of every user with
  enough of them); users held out entirely (`unseen_fraction` of them) and
  tracks held out entirely (`new_track`) give the other parts.
  """
  if len(fractions) != 3 or not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
    raise ValueError(f"fractions={tuple(fractions)}: expected three shares summing to 1")
  if not 0.0 <= unseen_fraction < 1.0:
    raise ValueError(f"unseen_fraction={unseen_fraction}: expected a value in [0, 1)")
  new_track = np.asarray(new_track, bool)
  if new_track.shape != (users.num_tracks,):
    raise ValueError(f"new_track: expected [{users.num_tracks}] booleans, got {new_track.shape}")
  rng = np.random.default_rng(seed)
  unseen_user = np.zeros(users.num_users, bool)
  unseen_user[rng.permutation(users.num_users)[:int(round(unseen_fraction * users.num_users))]] = True
  new = new_track[users.track]
  unseen = unseen_user[users.user]
  parts = {"unseen_users": np.flatnonzero(unseen & ~new),
           "new_tracks": np.flatnonzero(~unseen & new),
           "new_tracks_unseen_users": np.flatnonzero(unseen & new)}
  cuts = {"train": [], "validation": [], "test": []}
  known = ~unseen & ~new
  order = np.lexsort((users.liked, users.user))
  for u in np.flatnonzero(~unseen_user):
    for label in (True, False):
      rows = order[(users.user[order] == u) & (users.liked[order] == label) & known[order]]
      rows = rows[rng.permutation(len(rows))]
      first = int(round(fractions[0] * len(rows)))
      second = first + int(round(fractions[1] * len(rows)))
      cuts["train"].append(rows[:first])
      cuts["validation"].append(rows[first:second])
      cuts["test"].append(rows[second:])
  for name, chunks in cuts.items():
    parts[name] = np.sort(np.concatenate(chunks)) if chunks else np.zeros(0, np.int64)
  history = tuple(h[~new_track[h]] for h in users.history)
  return Split(parts={n: parts[n].astype(np.int64) for n in SPLIT_NAMES},
               unseen_user=unseen_user, new_track=new_track, history=history)
