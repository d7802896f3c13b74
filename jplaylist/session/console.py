"""The terminal player's commands: a typed line parsed and run on a live session.

`launch/play.py` reads lines from standard input (a terminal or a pipe) and
hands each to `Player.handle`, which runs it on a `live.LiveSession` and
returns what to print. The commands (the command word in any case; ids as
written):

  next | n                 show the queue again (no event)
  listen [ID] [SECONDS]    ID played for SECONDS (default: the head of the
                           queue, to its end)
  skip [ID] [SECONDS]      ID skipped after SECONDS (default: the head, at
                           once: 0 s, an early skip whatever the track's length)
  like [ID] [SECONDS]      as listen, and liked (a LIKE example)
  dislike [ID] [SECONDS]   as skip, and disliked (a DISLIKE example)
  save [PATH]              write the session's JSON to PATH (default: the
                           player's state file)
  help | ?                 this list
  quit | exit | q          stop (so does the end of the input)
  anything else            a request: "more flute", "less piano",
                           "something calmer" (`requests.parse_request`)

A line is a command only when its first word is a command word and the rest
fits that command: listen/skip/like/dislike take at most two words, the
second a plain decimal number (the seconds); a lone number is the seconds of
the head of the queue. Any other line is a request, so "skip the piano" is
the negative request "piano" while "skip t3" skips track t3. Quote an id
holding spaces (listen "My Music/a b.wav" 30); an id that is a plain number
must be followed by its seconds. Blank lines are ignored.

After every event (a play or a request) the player prints what it recorded,
then the re-sorted queue: rank, id, score (4 decimals), the track's
categorical attributes named in `columns` where the index has them, and its
length. A rejected command prints "error: " and the API's message and
changes nothing; the session goes on. With a state file the session's JSON
is written after every event (to a temporary file, then renamed over the
old one), so a player stopped at any moment resumes where it was
(`open_session`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from typing import Sequence

import numpy as np

from jplaylist.session import examples
from jplaylist.session import live
from jplaylist.session import requests
from jplaylist.session import strategies

PLAYS = ("listen", "skip", "like", "dislike")
WORDS = {"next": "next", "n": "next", "save": "save", "help": "help", "?": "help",
         "quit": "quit", "exit": "quit", "q": "quit", **{play: play for play in PLAYS}}
# A skip without a time is the listener's immediate "not this": an early SKIP
# (a fraction of 0 is under any skip threshold), not a PARTIAL play.
DEFAULT_SKIP_SECONDS = 0.0
DEFAULT_COLUMNS = ("ensemble", "style")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")

HELP = """commands:
  next | n                 show the queue again
  listen [ID] [SECONDS]    played ID (default: the head of the queue) for SECONDS (default: all)
  skip [ID] [SECONDS]      skipped ID (default: the head) after SECONDS (default: 0)
  like [ID] [SECONDS]      as listen, and liked
  dislike [ID] [SECONDS]   as skip, and disliked
  save [PATH]              write the session to PATH (default: the state file)
  help | ?                 this list
  quit | exit | q          stop (so does end of input)
  anything else            a request, e.g. "more flute", "less piano", "something calmer"
"""


@dataclasses.dataclass(frozen=True)
class Command:
  """A parsed line.

  Attributes:
    action: "next", "listen", "skip", "like", "dislike", "save", "help",
      "quit" or "request".
    track_id: the track of a play; None: the head of the queue.
    seconds: the seconds of a play; None: the default (listen: all, skip: 0).
    text: a request's words, or the path of a save (None: the state file).
  """
  action: str
  track_id: str | None = None
  seconds: float | None = None
  text: str | None = None


def parse_command(line: str) -> Command | None:
  """Parses a typed line by the rule of the module docstring.

  Args:
    line: one line of input, e.g. "skip t3 4.5", "less piano".

  Returns:
    Its `Command`, or None for a blank line.
  """
  stripped = line.strip()
  if not stripped:
    return None
  request = Command("request", text=stripped)
  action = WORDS.get(stripped.split()[0].lower())
  if action is None:
    return request
  try:
    words = shlex.split(stripped)[1:]
  except ValueError:  # an unbalanced quote: "listen to bach's cello"
    return request
  if action in PLAYS:
    if len(words) > 2 or (len(words) == 2 and not _NUMBER.fullmatch(words[1])):
      return request
    if len(words) == 1 and _NUMBER.fullmatch(words[0]):
      return Command(action, seconds=float(words[0]))
    return Command(action, track_id=words[0] if words else None,
                   seconds=float(words[1]) if len(words) == 2 else None)
  if action == "save" and len(words) <= 1:
    return Command("save", text=words[0] if words else None)
  return Command(action) if not words else request


def open_session(workdir: str, index_path: str, *, state_path: str | None = None,
                 strategy: str = strategies.DEFAULT_STRATEGY, text: str | None = None,
                 seed_track: str | None = None) -> tuple[live.LiveSession, str]:
  """A new session, or the one saved at `state_path` if that file exists.

  Args:
    workdir: trained workdir whose text tower embeds requests.
    index_path: library index (.npz of launch.embed).
    state_path: a session's JSON (`LiveSession.to_json`); resumed if present,
      and a new session is written there at once.
    strategy, text, seed_track: of a new session (`LiveSession`, `start`); a
      resumed session keeps its own strategy and has already started.

  Returns:
    (session, a line saying which session this is).

  Raises:
    FileNotFoundError: no checkpoint in `workdir` or no file `index_path`.
    live.SessionError, live.UnknownTrackError: a bad strategy, text or seed
      track, or a state file that is not a session of this library.
  """
  session = live.from_workdir(workdir, index_path, strategy=strategy)
  if state_path and os.path.exists(state_path):
    with open(state_path) as f:
      saved = f.read()
    try:
      session = live.LiveSession.from_json(saved, session.library, session.embed_text)
    except live.SessionError as error:
      raise live.SessionError(f"state file {state_path}: {error}") from error
    ignored = [name for name, value in (("text", text), ("seed_track", seed_track))
               if value is not None]
    note = f"; ignored {', '.join(ignored)} (already started)" if ignored else ""
    return session, (f"resumed {state_path} at event {session.event} "
                     f"(strategy {session.strategy}){note}")
  try:
    session.start(text=text, seed_track=seed_track)
  except live.SessionError as error:  # the text (a bad seed is an UnknownTrackError)
    raise live.SessionError(f"opening request: {error}") from error
  if state_path:
    write_state(session, state_path)
  return session, (f"new session over {session.library.num_tracks} tracks "
                   f"(strategy {session.strategy})")


def write_state(session: live.LiveSession, path: str) -> None:
  """The session's JSON at `path`, replacing any old file only once written whole."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  scratch = path + ".tmp"
  with open(scratch, "w") as f:
    f.write(session.to_json())
  os.replace(scratch, path)


def _clock(seconds: float) -> str:
  whole = int(round(float(seconds)))
  return f"{whole // 60}:{whole % 60:02d}"


def format_queue(session: live.LiveSession, size: int,
                 columns: Sequence[str] = DEFAULT_COLUMNS) -> list[str]:
  """The `size` best unplayed tracks, one line each, under a header line.

  A row: rank, id, score to 4 decimals, then the non-empty values of
  `columns` among the library's attributes and the track's length, joined
  by " | ".
  """
  return _format_queue(session, size, columns, _rows(session))


def _rows(session: live.LiveSession) -> dict[str, int]:
  return {track: i for i, track in enumerate(session.library.info.ids)}


def _format_queue(session, size, columns, row_of) -> list[str]:
  header = f"queue (event {session.event}, {_clock(session.elapsed)} played):"
  try:
    ranked = session.next(size)
  except live.SessionError as error:  # every candidate played
    return [header, f"  (empty: {error})"]
  library = session.library
  durations = np.asarray(library.duration_s)
  width = max(len(track) for track, _ in ranked)
  lines = [header]
  for rank, (track, score) in enumerate(ranked, 1):
    row = row_of[track]
    values = [str(library.attributes[c][row]) for c in columns if c in library.attributes]
    values = [v for v in values if v] + [_clock(durations[row])]
    lines.append(f"{rank:>4}  {track:<{width}}  {score:+.4f}  {' | '.join(values)}")
  return lines


class Player:
  """Runs typed lines on one session; see the module docstring.

  Args:
    session: a started `live.LiveSession`.
    queue_size: tracks shown after each event.
    columns: attributes shown per track, where the library has them.
    state_path: where the session is written after every event (None: nowhere).
  """

  def __init__(self, session: live.LiveSession, *, queue_size: int = 10,
               columns: Sequence[str] = DEFAULT_COLUMNS, state_path: str | None = None):
    if queue_size < 1:
      raise ValueError(f"queue_size={queue_size}: expected >= 1")
    self.session, self.queue_size = session, int(queue_size)
    self.columns, self.state_path = tuple(columns), state_path
    self.finished = False
    self._rows = _rows(session)
    self._durations = np.asarray(session.library.duration_s)

  def queue(self) -> list[str]:
    return _format_queue(self.session, self.queue_size, self.columns, self._rows)

  def handle(self, line: str) -> list[str]:
    """Runs one typed line; returns the lines to print (errors begin "error: ")."""
    command = parse_command(line)
    if command is None:
      return []
    try:
      return self._run(command)
    except live.UnknownTrackError as error:
      return [f"error: {error.args[0]}"]
    except (live.SessionError, OSError) as error:
      return [f"error: {error}"]

  def _run(self, command: Command) -> list[str]:
    session = self.session
    if command.action == "quit":
      self.finished = True
      return []
    if command.action == "help":
      return HELP.rstrip().splitlines()
    if command.action == "next":
      return self.queue()
    if command.action == "save":
      path = command.text or self.state_path
      if path is None:
        return ["error: no state file: give a path (save PATH) or start with --state"]
      write_state(session, path)
      return [f"saved event {session.event} to {path}"]
    if command.action == "request":
      session.request(command.text)
      parsed = requests.parse_request(command.text)
      done = f"request: {'more' if parsed.positive else 'less'} of {parsed.text!r}"
    else:
      track = command.track_id or session.next(1)[0][0]
      seconds = command.seconds
      if command.action in ("listen", "like"):
        kind = session.listened(track, seconds, liked=command.action == "like")
      else:
        seconds = DEFAULT_SKIP_SECONDS if seconds is None else seconds
        kind = session.skipped(track, seconds, disliked=command.action == "dislike")
      duration = float(self._durations[self._rows[track]])
      played = duration if seconds is None else min(seconds, duration)
      done = (f"{command.action} {track}: {played:.1f} of {duration:.1f} s -> "
              f"{examples.KIND_NAMES[kind]}")
    saved = []
    if self.state_path:
      try:
        write_state(session, self.state_path)
      except OSError as error:  # the event stands; the next save may succeed
        saved = [f"error: could not save {self.state_path}: {error}"]
    return [done] + saved + self.queue()
