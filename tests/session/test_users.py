"""Users with demographics, histories and liked/disliked tracks (issue 16, item 3).

Every simulated user gets the minimum liked and disliked tracks, none of
them in the history; taste follows the demographic group; the split keeps
held-out users and tracks out of training and cuts the rest per user and
label; a user-supplied interactions file round-trips and bad input is named.
"""

import itertools

import jax
import numpy as np
import pytest

from jplaylist.session import library as library_lib
from jplaylist.session import users as users_lib


@pytest.fixture(scope="module")
def library():
  return library_lib.synthetic_library(jax.random.key(0), 300, 8, 6)


def test_every_user_has_the_minimum_and_no_history_track_is_an_interaction(library):
  settings = users_lib.SimSettings(num_users=40, min_liked=10, min_disliked=10,
                                   min_exposed=25, history_length=12)
  allowed = np.arange(library.num_tracks) % 5 != 0
  users = users_lib.simulate(library, settings, history_tracks=allowed)
  assert users.num_users == 40 and users.demographics.shape == (40, 7)
  np.testing.assert_array_equal(users.demographics.sum(1), 2.0)  # one age band, one region
  for u in range(users.num_users):
    mine = users.user == u
    assert users.liked[mine].sum() >= 10 and (~users.liked[mine]).sum() >= 10
    assert mine.sum() >= 25
    assert len(np.unique(users.track[mine])) == mine.sum()
    assert len(users.history[u]) == 12 and allowed[users.history[u]].all()
    assert not np.isin(users.track[mine], users.history[u]).any()


def _agreement(users, pairs):
  """Mean share of co-rated tracks two users agree on, over `pairs`."""
  rated = [dict(zip(users.track[users.user == u].tolist(), users.liked[users.user == u]))
           for u in range(users.num_users)]
  shares = []
  for u, v in pairs:
    common = set(rated[u]) & set(rated[v])
    if len(common) >= 5:
      shares.append(np.mean([rated[u][t] == rated[v][t] for t in common]))
  return float(np.mean(shares))


def test_taste_follows_the_demographic_group(library):
  users = users_lib.simulate(library, users_lib.SimSettings(
      num_users=60, min_exposed=150, group_weight=0.8, seed=1))
  pairs = list(itertools.combinations(range(users.num_users), 2))
  same = [(u, v) for u, v in pairs if users.group[u] == users.group[v]]
  other = [(u, v) for u, v in pairs if users.group[u] != users.group[v]]
  # Without the group, the same draw of users agrees no more within a group.
  alone = users_lib.simulate(library, users_lib.SimSettings(
      num_users=60, min_exposed=150, group_weight=0.0, seed=1))
  assert _agreement(users, same) > _agreement(users, other) + 0.1
  assert abs(_agreement(alone, same) - _agreement(alone, other)) < 0.05


def test_a_library_too_small_for_the_minimum_is_refused(library):
  small = library_lib.synthetic_library(jax.random.key(1), 15, 8, 3)
  with pytest.raises(ValueError, match="min_liked=10, min_disliked=10"):
    users_lib.simulate(small, users_lib.SimSettings(num_users=3, history_length=2))


def test_the_split_holds_out_users_and_tracks_and_cuts_the_rest_per_user(library):
  users = users_lib.simulate(library, users_lib.SimSettings(num_users=50, min_exposed=40))
  new_track = np.arange(library.num_tracks) % 7 == 0
  split = users_lib.split(users, new_track, unseen_fraction=0.2, seed=3)
  parts = split.parts
  everything = np.concatenate(list(parts.values()))
  assert len(everything) == len(users.user) == len(np.unique(everything))
  assert split.unseen_user.sum() == 10
  known = ("train", "validation", "test")
  for name in known:
    assert not split.unseen_user[users.user[parts[name]]].any()
    assert not new_track[users.track[parts[name]]].any()
  assert split.unseen_user[users.user[parts["unseen_users"]]].all()
  assert new_track[users.track[parts["new_tracks"]]].all()
  assert not split.unseen_user[users.user[parts["new_tracks"]]].any()
  for u in np.flatnonzero(~split.unseen_user):
    for label in (True, False):
      counts = [np.sum((users.user[parts[n]] == u) & (users.liked[parts[n]] == label))
                for n in known]
      total = sum(counts)
      assert counts[0] == round(0.6 * total) and counts[1] == round(0.2 * total)
  assert all(not new_track[h].any() for h in split.history)
  with pytest.raises(ValueError, match="three shares"):
    users_lib.split(users, new_track, fractions=(0.5, 0.5))


def test_interaction_files_round_trip_and_bad_rows_are_named(tmp_path):
  tracks = ("a", "b", "c", "d")
  (tmp_path / "demo.csv").write_text("user,age,region\nu1,18-24,north\nu2,50+,\n")
  (tmp_path / "likes.csv").write_text(
      "user,track,liked\nu1,a,1\nu1,b,no\nu2,c,true\nu2,zz,1\nu1,a,0\n")
  (tmp_path / "history.csv").write_text("user,track\nu1,c\nu1,d\nu2,zz\n")
  users, report = users_lib.load(str(tmp_path / "likes.csv"), str(tmp_path / "demo.csv"),
                                 tracks, history_path=str(tmp_path / "history.csv"))
  assert users.user_ids == ("u1", "u2")
  assert users.demographic_labels == (("age", "18-24"), ("age", "50+"), ("region", "north"))
  np.testing.assert_array_equal(users.demographics, [[1, 0, 1], [0, 1, 0]])
  np.testing.assert_array_equal(users.user, [0, 0, 1])
  np.testing.assert_array_equal(users.track, [0, 1, 2])
  np.testing.assert_array_equal(users.liked, [True, False, True])
  np.testing.assert_array_equal(users.history[0], [2, 3])
  assert len(users.history[1]) == 0
  assert report == {"unknown_track_rows": 1, "duplicate_rows": 1,
                    "history_unknown_track_rows": 1}

  (tmp_path / "bad.csv").write_text("user,track,liked\nu1,a,maybe\n")
  with pytest.raises(ValueError, match=r"bad.csv, line 2: liked='maybe'"):
    users_lib.load(str(tmp_path / "bad.csv"), str(tmp_path / "demo.csv"), tracks)
  (tmp_path / "stranger.csv").write_text("user,track,liked\nu9,a,1\n")
  with pytest.raises(ValueError, match=r"no row in .*demo.csv, e.g. \['u9'\]"):
    users_lib.load(str(tmp_path / "stranger.csv"), str(tmp_path / "demo.csv"), tracks)
  (tmp_path / "columns.csv").write_text("user,song,liked\nu1,a,1\n")
  with pytest.raises(ValueError, match=r"missing column\(s\) \['track'\]"):
    users_lib.load(str(tmp_path / "columns.csv"), str(tmp_path / "demo.csv"), tracks)
