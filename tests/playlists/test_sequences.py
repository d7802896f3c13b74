"""Where sequences come from: playlist files and simulated listeners; tokens and splits."""

import numpy as np
import pytest

from jplaylist.playlists import sequences
from jplaylist.session import examples

LISTEN, SKIP, LIKE, PARTIAL = examples.LISTEN, examples.SKIP, examples.LIKE, examples.PARTIAL


def test_read_playlists_counts_what_it_skips(tmp_path):
  path = tmp_path / "playlists.txt"
  path.write_text("a b c\n\n# a comment\n  d\te  \nf\n")
  playlists, counts = sequences.read_playlists(str(path))
  assert playlists == [["a", "b", "c"], ["d", "e"], ["f"]]
  assert counts == dict(lines=5, playlists=3, blank=1, comment=1, items=6)
  (tmp_path / "empty.txt").write_text("\n# nothing\n")
  with pytest.raises(ValueError, match="empty.txt: no playlists"):
    sequences.read_playlists(str(tmp_path / "empty.txt"))


def test_from_history_keeps_listened_tracks_in_order():
  tracks = np.array([[[0, 1, 2, 3], [4, 5, 6, 7]], [[3, 2, 1, 0], [7, 6, 5, 4]]])
  kinds = np.array([[[LISTEN, SKIP, LIKE, LISTEN], [SKIP, SKIP, LISTEN, PARTIAL]],
                    [[LIKE, LIKE, SKIP, SKIP], [SKIP, SKIP, SKIP, SKIP]]])
  ids = [f"id{i}" for i in range(8)]
  out, listener = sequences.from_history(tracks, kinds, ids, min_length=1)
  assert out == [["id0", "id2", "id3"], ["id6"], ["id3", "id2"]]
  np.testing.assert_array_equal(listener, [0, 0, 1])
  out, listener = sequences.from_history(tracks, kinds, ids, min_length=2)
  assert out == [["id0", "id2", "id3"], ["id3", "id2"]]
  with pytest.raises(ValueError, match="equal"):
    sequences.from_history(tracks, kinds[:, :1], ids)


def test_attribute_tokens_and_inline_tokens():
  attributes = [{"composer": "G. P.  da\tPalestrina", "instruments": ["flute", "organ"]},
                {"composer": None, "style": "German\n folk"}]
  extra = sequences.attribute_tokens(["x", "y"], attributes, ("composer", "style", "instruments"))
  assert extra == {"x": ["composer=G._P._da_Palestrina", "instruments=flute",
                         "instruments=organ"], "y": ["style=German_folk"]}
  assert sequences.with_inline_tokens([["y", "x", "z"]], extra) == [
      ["y", "style=German_folk", "x", "composer=G._P._da_Palestrina", "instruments=flute",
       "instruments=organ", "z"]]


def test_split_drop_and_cold_tracks():
  data = [["a", "b"], ["c"], ["d", "e", "f"], ["g", "h"], ["i", "j"]]
  train, test = sequences.split(data, 0.5, seed=0)
  assert len(test) == 2 and all(len(s) >= 2 for s in test)
  assert sorted(map(tuple, train + test)) == sorted(map(tuple, data))
  assert sequences.split(data, 0.5, seed=0) == (train, test)
  kept, removed = sequences.drop_tracks(data, ["c", "e"])
  assert kept == [["a", "b"], ["d", "f"], ["g", "h"], ["i", "j"]] and removed == 2
  cold = sequences.choose_cold_tracks(list("abcdefghij"), 0.3, seed=1)
  assert len(cold) == 3 and set(cold) <= set("abcdefghij")
  assert sequences.choose_cold_tracks(list("abc"), 0.0, seed=1) == []
  for fraction in (1.0, -0.1):
    with pytest.raises(ValueError, match=f"cold_fraction={fraction}"):
      sequences.choose_cold_tracks(list("abc"), fraction, seed=1)
