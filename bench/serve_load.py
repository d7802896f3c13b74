r"""Load test of the listening page's API on loopback: many sessions at once.

  python -m bench.serve_load --workdir=workdirs/demo       # the demo library and text tower
  python -m bench.serve_load --concurrency=1,10,100 --events=10   # a synthetic library

The server (`jplaylist.serving.app.make_app` under uvicorn, one worker) runs in
a child process on 127.0.0.1; this process drives it with httpx2 over asyncio.
At each concurrency level, that many browsers start a session at once (with
a text request) and each sends --events calls, one after another: a listen
or a skip of its queue's head, and every fourth call a text request; each
reply carries the re-sorted queue. Latency is per call (client side, so it
includes queueing behind the other sessions); an error is any non-2xx reply
or failed connection. Levels run one after another in one run, so the ratios
to the first level are measured side by side. One untimed session first
compiles the session programs.
"""

import asyncio
import hashlib
import logging
import multiprocessing
import socket
import time

from absl import app
from absl import flags
import httpx2
import numpy as np

_WORKDIR = flags.DEFINE_string("workdir", None, "Text tower and library (<workdir>/library.npz);"
                               " default: a synthetic library and a hashing text embedder.")
_INDEX = flags.DEFINE_string("index", None, "Library index (default: <workdir>/library.npz).")
_NUM_TRACKS = flags.DEFINE_integer("num_tracks", 2000, "Synthetic library size.")
_CONCURRENCY = flags.DEFINE_list("concurrency", ["1", "10", "100"], "Sessions at once, per level.")
_EVENTS = flags.DEFINE_integer("events", 10, "Calls per session after it starts.")
_QUEUE = flags.DEFINE_integer("queue_length", 10, "Tracks in each reply's queue.")
TEXTS = ("solo flute", "more strings", "less piano", "something calm", "a lively reel")


def _serve(sock, workdir, index_path, num_tracks, queue_length):
  """The child process: builds the app and serves it on `sock` until killed."""
  import uvicorn  # pylint: disable=g-import-not-at-top
  from jplaylist import inference  # pylint: disable=g-import-not-at-top
  from jplaylist import library_index  # pylint: disable=g-import-not-at-top
  from jplaylist.serving import app as app_lib  # pylint: disable=g-import-not-at-top
  if workdir:
    library = library_index.load(index_path or f"{workdir}/library.npz")
    embed_text = inference.load(workdir).embed_text
  else:
    rng = np.random.default_rng(0)
    dim = 128
    library = library_index.LibraryIndex(
        ids=[f"track-{i}" for i in range(num_tracks)],
        embeddings=rng.standard_normal((num_tracks, dim)).astype(np.float32),
        attributes=[{"duration_s": float(d)} for d in rng.uniform(60, 300, num_tracks)], meta={})

    def embed_text(texts):  # a fixed random direction per text: no model needed
      seeds = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little") for t in texts]
      return np.stack([np.random.default_rng(s).standard_normal(dim) for s in seeds]
                      ).astype(np.float32)

  web = app_lib.make_app(library, embed_text, None, queue_length=queue_length,
                         max_sessions=100_000)
  uvicorn.Server(uvicorn.Config(web, log_level="error")).run(sockets=[sock])


async def _session(http, number, events, latencies, errors):
  """One browser: start, then `events` calls; appends (kind, seconds) to latencies."""

  async def timed(kind, method, path, body=None):
    start = time.perf_counter()
    try:
      reply = await http.request(method, path, json=body)
    except httpx2.HTTPError as error:
      errors.append(f"{kind}: {type(error).__name__}: {error}")
      return None
    latencies.append((kind, time.perf_counter() - start))
    if reply.status_code >= 300:
      errors.append(f"{kind}: {reply.status_code} {reply.text[:200]}")
      return None
    return reply.json()

  reply = await timed("start", "POST", "/api/sessions", {"text": TEXTS[number % len(TEXTS)]})
  if reply is None:
    return
  base = f"/api/sessions/{reply['session']}"
  for call in range(events):
    if call % 4 == 3:
      got = await timed("request", "POST", f"{base}/requests",
                        {"text": TEXTS[(number + call) % len(TEXTS)]})
    elif reply["queue"]:
      head = reply["queue"][0]["id"]
      body = ({"kind": "listen", "track_id": head} if call % 2 == 0 else
              {"kind": "skip", "track_id": head, "seconds": 2.0})
      got = await timed(body["kind"], "POST", f"{base}/events", body)
    else:
      break
    reply = got or reply


async def _level(url, concurrency, events):
  latencies, errors = [], []
  limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
  async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=300.0) as http:
    start = time.perf_counter()
    await asyncio.gather(*(_session(http, n, events, latencies, errors)
                           for n in range(concurrency)))
    wall = time.perf_counter() - start
  return latencies, errors, wall


def _row(name, seconds, errors):
  ms = np.asarray(seconds) * 1e3
  return (name, len(ms), np.percentile(ms, 50), np.percentile(ms, 99), ms.max(), errors)


def main(argv):
  del argv
  logging.getLogger("httpx2").setLevel(logging.WARNING)  # not a line per call
  levels = [int(c) for c in _CONCURRENCY.value]
  sock = socket.socket()
  sock.bind(("127.0.0.1", 0))
  url = f"http://127.0.0.1:{sock.getsockname()[1]}"
  server = multiprocessing.get_context("spawn").Process(
      target=_serve, args=(sock, _WORKDIR.value, _INDEX.value, _NUM_TRACKS.value, _QUEUE.value),
      daemon=True)
  server.start()
  try:
    for _ in range(600):  # the child imports JAX and builds the app first
      try:
        httpx2.get(url + "/static/app.js", timeout=1.0)
        break
      except httpx2.HTTPError:
        time.sleep(0.5)
    asyncio.run(_level(url, 1, _EVENTS.value))  # compiles; not reported
    print(f"Library: {_WORKDIR.value or f'synthetic, {_NUM_TRACKS.value} tracks'}; "
          f"{_EVENTS.value} calls per session after its start; server: 1 uvicorn worker.")
    print(f"{'sessions':>8} {'call':>8} {'count':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'errors':>6} {'p50 vs 1st':>10} {'level calls/s':>13}")
    first = {}
    for concurrency in levels:
      latencies, errors, wall = asyncio.run(_level(url, concurrency, _EVENTS.value))
      groups = {"start": ["start"], "event": ["listen", "skip"], "request": ["request"]}
      for name, kinds in groups.items():
        seconds = [s for kind, s in latencies if kind in kinds]
        if not seconds:
          continue
        failed = sum(e.split(":")[0] in kinds for e in errors)
        row = _row(name, seconds, failed)
        first.setdefault(name, row[2])
        print(f"{concurrency:>8} {row[0]:>8} {row[1]:>6} {row[2]:>8.1f} {row[3]:>8.1f} "
              f"{row[4]:>8.1f} {row[5]:>6} {row[2] / first[name]:>9.1f}x "
              f"{len(latencies) / wall:>13.1f}")
      for error in errors[:5]:
        print(f"  error: {error}")
  finally:
    server.kill()
    server.join()


if __name__ == "__main__":
  app.run(main)
