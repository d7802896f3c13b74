"""The terminal player (launch/play.py) against the live session API in-process.

A script piped into `python -m launch.play` must print, after every event,
the queue that `live.LiveSession` gives for the same events in this process
(ids exactly, scores to the printed 4 decimals); a bad id or a replay prints
the API's error and the session goes on; the state file written at the end
of the input is the in-process session's JSON, and a player resumed from it
serves what the uninterrupted session serves. Bad flags exit non-zero naming
the problem. The command parser is checked on its own, without a process.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jplaylist import inference
from jplaylist import library_index
from jplaylist.session import console
from jplaylist.session import examples
from jplaylist.session import live

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUEUE = 4
# A printed queue row: rank, id, score (the rest is attributes and length).
ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+([+-]\d+\.\d{4})\s")
# The player's environment: this suite's devices and compilation cache, so
# the player's programs are compiled once across runs.
ENV = dict(os.environ, JAX_PLATFORMS="cpu",
           JAX_COMPILATION_CACHE_DIR=os.path.join(REPO, ".cache", "jax_compilation"),
           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


@pytest.mark.parametrize("line, command", [
    ("", None),
    ("   ", None),
    ("n", console.Command("next")),
    ("NEXT", console.Command("next")),
    ("listen", console.Command("listen")),
    ("listen t3", console.Command("listen", track_id="t3")),
    ("Listen t3 30", console.Command("listen", track_id="t3", seconds=30.0)),
    ("skip 4.5", console.Command("skip", seconds=4.5)),          # the head, after 4.5 s
    ("skip t1 -1", console.Command("skip", track_id="t1", seconds=-1.0)),  # the API rejects it
    ("like t2", console.Command("like", track_id="t2")),
    ("dislike .5", console.Command("dislike", seconds=0.5)),
    ('listen "My Music/a b.wav" 12', console.Command("listen", track_id="My Music/a b.wav",
                                                     seconds=12.0)),
    ("save", console.Command("save")),
    ("save /tmp/s.json", console.Command("save", text="/tmp/s.json")),
    ("?", console.Command("help")),
    ("exit", console.Command("quit")),
    # Lines a command word begins but whose rest does not fit are requests.
    ("skip the piano", console.Command("request", text="skip the piano")),
    ("listen t3 later", console.Command("request", text="listen t3 later")),
    ("skip a b 3", console.Command("request", text="skip a b 3")),
    ("listen to bach's cello", console.Command("request", text="listen to bach's cello")),
    ("next flute", console.Command("request", text="next flute")),
    ("skip t1 nan", console.Command("request", text="skip t1 nan")),
    ("  more flute ", console.Command("request", text="more flute")),
    ("less piano", console.Command("request", text="less piano")),
])
def test_parse_command(line, command):
  assert console.parse_command(line) == command


@pytest.fixture(scope="module")
def library(trained_workdir, tmp_path_factory):
  """(index path, text embedder): 8 tracks, two at the text embeddings of
  "flute" and "piano" (so requests move them), with attributes."""
  model = inference.load(trained_workdir)
  rng = np.random.default_rng(0)
  embeddings = rng.standard_normal((8, model.model.embed_dim)).astype(np.float32)
  embeddings[:2] = model.embed_text(["flute", "piano"])
  attributes = [_attributes(i) for i in range(8)]
  path = library_index.LibraryIndex(
      ids=[f"t{i}" for i in range(8)], embeddings=embeddings, attributes=attributes,
      meta={}).save(str(tmp_path_factory.mktemp("play") / "library.npz"))
  return path, model.embed_text


def _attributes(track):
  return {"ensemble": ("solo flute", "solo piano", "flute with piano", "string quartet")[
      track % 4], "style": ("Baroque", "Romantic")[track % 2], "duration_s": 20.0 + 2 * track}


def _play(args, script):
  return subprocess.run([sys.executable, "-m", "launch.play", *args], input=script,
                        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)


def _queues(stdout):
  """Every printed queue: [[(id, score)]], in order."""
  queues = []
  for line in stdout.splitlines():
    if line.startswith("queue ("):
      queues.append([])
    elif (row := ROW.match(line)) and queues:
      assert int(row.group(1)) == len(queues[-1]) + 1, line
      queues[-1].append((row.group(2), float(row.group(3))))
  return queues


def _assert_same_queues(printed, expected):
  assert len(printed) == len(expected)
  for got, want in zip(printed, expected):
    assert [t for t, _ in got] == [t for t, _ in want]
    # Printed to 4 decimals: within half a unit of the last (and float32 slack).
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=0, atol=5.1e-5)


@pytest.fixture(scope="module")
def piped(library, trained_workdir, tmp_path_factory):
  """A scripted run of the player with --state, and the same events in this
  process, continued as if never stopped by one more skip of the head."""
  path, embed = library
  state = str(tmp_path_factory.mktemp("play_state") / "session.json")
  session = live.LiveSession(library_index.load(path), embed).start(text="flute")
  expected = [session.next(QUEUE), session.next(QUEUE)]  # at start, and "next"
  first = session.next(1)[0][0]
  session.skipped(first, 0.0)
  expected.append(session.next(QUEUE))
  session.request("less piano")
  expected.append(session.next(QUEUE))
  session.listened(session.next(1)[0][0])
  expected.append(session.next(QUEUE))
  last = session.next(QUEUE)[-1][0]  # an explicit id, not the head
  assert session.listened(last, 4.5) == examples.PARTIAL  # 4.5 s of over 20 s
  expected.append(session.next(QUEUE))
  expected.append(session.next(QUEUE))  # "next" after the errors: nothing changed
  script = (f"next\nskip\nless piano\nlisten\nlisten nope\nskip {first} 2\n"
            f"listen {last} 4.5\n\nnext\n")
  out = _play([f"--workdir={trained_workdir}", f"--index={path}", "--text=flute",
               f"--queue={QUEUE}", f"--state={state}"], script)
  assert out.returncode == 0, out.stderr[-3000:]
  saved, elapsed = session.to_json(), float(session.elapsed)
  continued = [session.next(QUEUE)]
  session.skipped(continued[0][0][0], 0.0)
  continued.append(session.next(QUEUE))
  return dict(out=out, state=state, expected=expected, first=first, last=last, saved=saved,
              elapsed=elapsed, continued=continued, continued_json=session.to_json())


def test_a_piped_session_prints_the_live_apis_queues(piped):
  out, state, first, last = (piped[k] for k in ("out", "state", "first", "last"))
  _assert_same_queues(_queues(out.stdout), piped["expected"])
  assert "error: unknown track id 'nope'" in out.stdout
  assert f"error: skipped: track '{first}' has already been played" in out.stdout
  assert f"listen {last}: 4.5 of {20.0 + 2 * int(last[1:]):.1f} s -> partial" in out.stdout
  # Each row ends with the track's ensemble, style and length (m:ss).
  rows = [ROW.match(line) for line in out.stdout.splitlines()]
  tails = {(r.group(2), r.string[r.end():].strip()) for r in rows if r}
  assert tails == {(t, "{ensemble} | {style} | 0:{duration_s:.0f}".format(**_attributes(
      int(t[1:])))) for t, _ in tails}
  assert out.stdout.splitlines()[-1] == (f"3 events, {piped['elapsed']:.0f} s played; "
                                         f"state in {state}")
  # The state after the last event is this process's session, field by field.
  with open(state) as f:
    assert json.load(f) == json.loads(piped["saved"])


def test_a_resumed_player_serves_as_the_uninterrupted_session(piped, library, trained_workdir,
                                                               tmp_path):
  path, _ = library
  copy = str(tmp_path / "session.json")
  shutil.copy(piped["state"], copy)
  # A state file of another library is refused, and left as it was.
  other = library_index.load(path)
  other = library_index.LibraryIndex(ids=other.ids[:-1], embeddings=other.embeddings[:-1],
                                     attributes=other.attributes[:-1], meta={}).save(
                                         str(tmp_path / "other.npz"))
  with pytest.raises(live.SessionError, match=f"state file {re.escape(copy)}: .*7 tracks"):
    console.open_session(trained_workdir, other, state_path=copy)
  with open(copy) as f:
    assert f.read() == piped["saved"]
  resumed, opened = console.open_session(trained_workdir, path, state_path=copy, text="piano")
  assert opened == f"resumed {copy} at event 3 (strategy linucb); ignored text (already started)"
  player = console.Player(resumed, queue_size=QUEUE, state_path=copy)
  printed = _queues("\n".join(player.queue() + player.handle("skip")))
  _assert_same_queues(printed, piped["continued"])
  with open(copy) as f:
    assert json.load(f) == json.loads(piped["continued_json"])
  assert player.handle("save") == [f"saved event 4 to {copy}"] and not player.finished
  assert player.handle("quit") == [] and player.finished


def test_bad_flags_exit_non_zero_naming_the_problem(library, tmp_path):
  path, _ = library
  missing = str(tmp_path / "missing.npz")
  untrained = tmp_path / "untrained"
  untrained.mkdir()
  runs = [([f"--workdir={untrained}", f"--index={missing}"],
           f"--index={missing}: no such file"),
          ([f"--workdir={untrained}", f"--index={path}"],
           f"--workdir={untrained}: no checkpoint in {untrained}")]
  # Both at once: each is mostly the start of a Python process.
  players = [subprocess.Popen([sys.executable, "-m", "launch.play", *args], cwd=REPO, env=ENV,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args, _ in runs]
  for player, (_, message) in zip(players, runs):
    _, stderr = player.communicate(timeout=300)
    assert player.returncode != 0
    assert message in stderr, stderr[-3000:]
