r"""A terminal player: one adaptive playlist session on a library index.

  python -m launch.play --workdir=workdirs/demo --index=workdirs/demo/library.npz \
      --text="baroque flute" --state=/tmp/session.json
  printf 'skip\nless piano\nlisten\n' | python -m launch.play --workdir=workdirs/demo \
      --index=workdirs/demo/library.npz --text="calm strings"

Type a request ("more flute", "less piano") or a command (`next`, `listen [id]
[seconds]`, `skip [id] [seconds]`, `like`, `dislike`, `save [path]`, `help`,
`quit`); after every event the re-sorted queue is printed with scores. Lines
come from a terminal or a pipe (then each is echoed after "> ", so the output
reads as a transcript). Bad commands print "error: ..." and the session goes
on; the exit code is 0 at the end of the input. With --state the session is
written after every event and resumed from that file when it exists.
The commands and their rules are `jplaylist.session.console`'s, the session
`jplaylist.session.live`'s; this file is intentionally kept short.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from jplaylist.session import console
from jplaylist.session import live
from jplaylist.session import strategies

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (its text tower embeds "
                               "requests).")
_INDEX = flags.DEFINE_string("index", None, "Library index (.npz of launch.embed).")
_STRATEGY = flags.DEFINE_enum("strategy", strategies.DEFAULT_STRATEGY, strategies.STRATEGIES,
                              "Session strategy of a new session.")
_TEXT = flags.DEFINE_string("text", None, "Opening request of a new session.")
_SEED_TRACK = flags.DEFINE_string("seed_track", None, "Seed track id of a new session.")
_QUEUE = flags.DEFINE_integer("queue", 10, "Tracks shown after each event.", lower_bound=1)
_STATE = flags.DEFINE_string("state", None, "Session JSON: resumed if it exists, written "
                             "after every event.")
_COLUMNS = flags.DEFINE_list("columns", list(console.DEFAULT_COLUMNS),
                             "Index attributes shown per track (where present).")
flags.mark_flags_as_required(["workdir", "index"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:  # the transcript, not the loaders' logs
    logging.set_verbosity(logging.WARNING)
  if not os.path.isfile(_INDEX.value):
    raise app.UsageError(f"--index={_INDEX.value}: no such file")
  try:
    session, opened = console.open_session(
        _WORKDIR.value, _INDEX.value, state_path=_STATE.value, strategy=_STRATEGY.value,
        text=_TEXT.value, seed_track=_SEED_TRACK.value)
  except FileNotFoundError as error:
    raise app.UsageError(f"--workdir={_WORKDIR.value}: {error}") from error
  except live.UnknownTrackError as error:
    raise app.UsageError(f"--seed_track: {error.args[0]}") from error
  except live.SessionError as error:
    raise app.UsageError(str(error)) from error
  player = console.Player(session, queue_size=_QUEUE.value, columns=_COLUMNS.value,
                          state_path=_STATE.value)
  interactive = sys.stdin.isatty()
  print(f"{opened}; type help for commands", *player.queue(), sep="\n", flush=True)
  try:
    while not player.finished:
      if interactive:
        print("> ", end="", flush=True)
      line = sys.stdin.readline()
      if not line:  # end of input (Ctrl-D at a terminal)
        if interactive:
          print()
        break
      if not interactive and line.strip():
        print(f"> {line.strip()}")
      output = player.handle(line)
      if output:
        print(*output, sep="\n", flush=True)
  except KeyboardInterrupt:
    print()
  where = f"; state in {_STATE.value}" if _STATE.value else ""
  print(f"{session.event} events, {session.elapsed:.0f} s played{where}")


if __name__ == "__main__":
  app.run(main)
