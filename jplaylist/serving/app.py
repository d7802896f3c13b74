"""The listening page's ASGI app: one live session per browser, over JSON.

The patent's adaptive playlist (WO2024043931A1) as a web player: each browser
holds one `live.LiveSession` by id; every event (a listen, a skip, a text
request) re-sorts its queue, and the reply carries the new queue. Built by
`make_app(library, embed_text, audio_source)` (Starlette; `launch/serve.py`
runs it with uvicorn):

  GET    /                              the page (static/index.html)
  POST   /api/sessions                  {"text"?, "seed_track"?} -> 201 a new session
  GET    /api/sessions/{id}/queue?k=    its queue
  POST   /api/sessions/{id}/events      {"kind": "listen"|"skip", "track_id",
                                         "seconds" (null: whole), "liked"?|"disliked"?}
  POST   /api/sessions/{id}/requests    {"text": "more strings"}
  DELETE /api/sessions/{id}             ends it
  GET    /audio/{track_id}              the track as WAV (Range requests answered)

Every session reply is {"session", "event", "queue": [{"id", "score", "title",
"detail", "attributes", "duration_s"}, ...]} (plus "played" or "request").
A rejected call gets a 4xx with {"error": message}, the session API's own
message where it made one (`live.SessionError` 400, `live.UnknownTrackError`
404, an unknown session 404), and changes nothing. Calls on one session are
serialised by its asyncio.Lock; the JAX work runs in the thread pool, so a
slow call on one session does not hold up the others. The server keeps at
most `max_sessions` sessions and forgets the least recently used beyond that.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import math
import re
import secrets
from typing import Any, Mapping

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jplaylist import library_index
from jplaylist.serving import audio as audio_lib
from jplaylist.session import examples
from jplaylist.session import live

QUEUE_LENGTH = 10
MAX_QUEUE_LENGTH = 100
MAX_BODY_BYTES = 16_384
# Attributes shown beside a title, the first ones a library has.
DETAIL_KEYS = ("ensemble", "style", "genre", "mood", "composer")
KINDS = ("listen", "skip")


class Rejected(Exception):
  """A call answered with `status` and {"error": message}."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status, self.message = status, message


@dataclasses.dataclass
class _Entry:
  session: live.LiveSession
  lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


class SessionStore:
  """Live sessions by id, the least recently used forgotten past `max_sessions`."""

  def __init__(self, max_sessions: int):
    if max_sessions < 1:
      raise ValueError(f"max_sessions={max_sessions}: expected >= 1")
    self.max_sessions = max_sessions
    self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()

  def __len__(self) -> int:
    return len(self._entries)

  def add(self, session: live.LiveSession) -> str:
    session_id = secrets.token_urlsafe(12)
    self._entries[session_id] = _Entry(session)
    while len(self._entries) > self.max_sessions:
      self._entries.popitem(last=False)
    return session_id

  def get(self, session_id: str) -> _Entry:
    entry = self._entries.get(session_id)
    if entry is None:
      raise Rejected(404, f"unknown session {session_id!r} (it may have ended, or been "
                          f"forgotten: the server keeps the last {self.max_sessions})")
    self._entries.move_to_end(session_id)
    return entry

  def remove(self, session_id: str) -> None:
    self.get(session_id)
    del self._entries[session_id]


def _track_cards(library, index: library_index.LibraryIndex | None) -> list[dict[str, Any]]:
  """What the page shows of each track: title, detail line, attributes, duration."""
  ids = library.info.ids
  durations = np.asarray(library.duration_s, np.float64)
  cards = []
  for i, track_id in enumerate(ids):
    if index is not None:
      attributes = index.attributes[i]
    else:
      attributes = {k: str(v[i]) for k, v in library.info.attributes.items() if v[i]}
    shown = {k: attributes[k] for k in DETAIL_KEYS if isinstance(attributes.get(k), str)}
    title = attributes.get("title")
    cards.append({"id": track_id, "title": title if isinstance(title, str) else track_id,
                  "detail": ", ".join(shown.values()), "attributes": shown,
                  "duration_s": round(float(durations[i]), 3)})
  return cards


async def _json_object(request: Request) -> dict[str, Any]:
  body = await request.body()
  if len(body) > MAX_BODY_BYTES:
    raise Rejected(413, f"body of {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
  if not body:
    return {}
  try:
    value = json.loads(body)
  except (UnicodeDecodeError, json.JSONDecodeError) as error:
    raise Rejected(400, f"body: not JSON ({error})") from None
  if not isinstance(value, dict):
    raise Rejected(400, f"body: expected a JSON object, got {type(value).__name__}")
  return value


def _field(body: Mapping[str, Any], name: str, types, *, required=False, default=None):
  value = body.get(name)
  if value is None:
    if required:
      raise Rejected(400, f"{name}: required")
    return default
  if isinstance(value, bool) and bool not in types or not isinstance(value, types):
    expected = " or ".join(t.__name__ for t in types)
    raise Rejected(400, f"{name}={value!r}: expected {expected}")
  return value


def _unexpected(body: Mapping[str, Any], allowed) -> None:
  extra = sorted(set(body) - set(allowed))
  if extra:
    raise Rejected(400, f"unexpected fields {extra}; expected some of {sorted(allowed)}")


def _queue_length(request: Request, default: int) -> int:
  text = request.query_params.get("k")
  if text is None:
    return default
  if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= MAX_QUEUE_LENGTH:
    raise Rejected(400, f"k={text!r}: expected an integer from 1 to {MAX_QUEUE_LENGTH}")
  return int(text)


def make_app(library, embed_text: live.EmbedText, audio_source=None, *,
             session_options: Mapping[str, Any] | None = None,
             queue_length: int = QUEUE_LENGTH, max_sessions: int = 10_000) -> Starlette:
  """The listening page's app over one library, shared by all its sessions.

  Args:
    library: a `library_index.LibraryIndex` (its attributes give titles and
      details) or a `session.library.Library`.
    embed_text: texts -> [n, d] text embeddings (`inference.Model.embed_text`).
    audio_source: `audio.DatasetAudio`, `audio.FolderAudio` or anything with
      `wav(track_id) -> bytes` raising `audio.UnknownAudioError`; None: no audio.
    session_options: keyword arguments of every `live.LiveSession`
      (strategy, params, candidates, max_examples, ...).
    queue_length: tracks in a queue unless a call asks for k.
    max_sessions: sessions kept; the least recently used are forgotten.

  Returns:
    The Starlette app; `app.state.sessions` is its `SessionStore`.
  """
  index = library if isinstance(library, library_index.LibraryIndex) else None
  library = live.as_library(library)  # normalised once, not per session
  options = dict(session_options or {})
  live.LiveSession(library, embed_text, **options)  # bad options fail here, not per browser
  cards = {card["id"]: card for card in _track_cards(library, index)}
  sessions = SessionStore(max_sessions)

  def queue(session: live.LiveSession, k: int) -> list[dict[str, Any]]:
    try:
      ranked = session.next(k)
    except live.SessionError:  # every candidate played: an empty queue
      return []
    return [{**cards[track_id], "score": round(score, 6)} for track_id, score in ranked]

  def reply(session_id: str, session: live.LiveSession, k: int, **extra) -> dict[str, Any]:
    return {"session": session_id, "event": session.event, **extra,
            "queue": queue(session, k)}

  async def call(work, *args):
    """Runs session work in the thread pool; its rejections become 4xx."""
    try:
      return await run_in_threadpool(work, *args)
    except live.UnknownTrackError as error:
      raise Rejected(404, str(error.args[0])) from None
    except live.SessionError as error:
      raise Rejected(400, str(error)) from None

  async def create(request: Request) -> Response:
    k = _queue_length(request, queue_length)
    body = await _json_object(request)
    _unexpected(body, ("text", "seed_track"))
    text = _field(body, "text", (str,))
    seed_track = _field(body, "seed_track", (str,))

    def start():
      session = live.LiveSession(library, embed_text, **options)
      session.start(text=text, seed_track=seed_track)
      return session, queue(session, k)

    session, ranked = await call(start)
    session_id = sessions.add(session)
    return JSONResponse({"session": session_id, "event": session.event, "queue": ranked},
                        status_code=201)

  async def get_queue(request: Request) -> Response:
    k = _queue_length(request, queue_length)
    session_id = request.path_params["session_id"]
    entry = sessions.get(session_id)
    async with entry.lock:
      return JSONResponse(await call(reply, session_id, entry.session, k))

  async def event(request: Request) -> Response:
    k = _queue_length(request, queue_length)
    session_id = request.path_params["session_id"]
    entry = sessions.get(session_id)
    body = await _json_object(request)
    _unexpected(body, ("kind", "track_id", "seconds", "liked", "disliked"))
    kind = _field(body, "kind", (str,), required=True)
    if kind not in KINDS:
      raise Rejected(400, f"kind={kind!r}: expected one of {list(KINDS)}")
    track_id = _field(body, "track_id", (str,), required=True)
    seconds = _field(body, "seconds", (int, float))
    if seconds is not None and not math.isfinite(seconds):
      raise Rejected(400, f"seconds={seconds!r}: expected a finite number")
    flag = "liked" if kind == "listen" else "disliked"
    if body.get("disliked" if kind == "listen" else "liked") is not None:
      raise Rejected(400, f"kind={kind!r} takes {flag!r}, not the other flag")
    flagged = _field(body, flag, (bool,), default=False)

    def play(session):
      if kind == "listen":
        played = session.listened(track_id, seconds, liked=flagged)
      else:
        played = session.skipped(track_id, seconds, disliked=flagged)
      return reply(session_id, session, k, played={
          "track_id": track_id, "seconds": seconds, "kind": examples.KIND_NAMES[played]})

    async with entry.lock:
      return JSONResponse(await call(play, entry.session))

  async def text_request(request: Request) -> Response:
    k = _queue_length(request, queue_length)
    session_id = request.path_params["session_id"]
    entry = sessions.get(session_id)
    body = await _json_object(request)
    _unexpected(body, ("text",))
    text = _field(body, "text", (str,), required=True)

    def ask(session):
      session.request(text)
      return reply(session_id, session, k, request={"text": text})

    async with entry.lock:
      return JSONResponse(await call(ask, entry.session))

  async def end(request: Request) -> Response:
    sessions.remove(request.path_params["session_id"])
    return Response(status_code=204)

  async def track_audio(request: Request) -> Response:
    track_id = request.path_params["track_id"]
    if track_id not in cards:
      raise Rejected(404, f"unknown track id {track_id!r} (the library has "
                          f"{len(cards)} tracks)")
    if audio_source is None:
      raise Rejected(404, "this server has no audio source")
    try:
      data = await run_in_threadpool(audio_source.wav, track_id)
    except audio_lib.UnknownAudioError as error:
      raise Rejected(404, str(error)) from None
    return _ranged(data, request.headers.get("range"))

  async def page(request: Request) -> Response:
    del request
    return FileResponse(_static_file("index.html"), media_type="text/html")

  async def rejected(request: Request, error: Exception) -> Response:
    del request
    if isinstance(error, Rejected):
      return JSONResponse({"error": error.message}, status_code=error.status)
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

  app = Starlette(routes=[
      Route("/", page),
      Route("/api/sessions", create, methods=["POST"]),
      Route("/api/sessions/{session_id}/queue", get_queue),
      Route("/api/sessions/{session_id}/events", event, methods=["POST"]),
      Route("/api/sessions/{session_id}/requests", text_request, methods=["POST"]),
      Route("/api/sessions/{session_id}", end, methods=["DELETE"]),
      Route("/audio/{track_id:path}", track_audio),
      Mount("/static", StaticFiles(packages=[("jplaylist.serving", "static")]), name="static"),
  ], exception_handlers={Rejected: rejected, HTTPException: rejected})
  app.state.sessions = sessions
  return app


def _static_file(name: str) -> str:
  import importlib.resources  # pylint: disable=g-import-not-at-top
  return str(importlib.resources.files("jplaylist.serving") / "static" / name)


def _ranged(data: bytes, header: str | None) -> Response:
  """The WAV file, or the byte range a "Range: bytes=a-b" header asks for."""
  headers = {"accept-ranges": "bytes", "cache-control": "max-age=3600"}
  if not header:
    return Response(data, media_type="audio/wav", headers=headers)
  match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
  size = len(data)
  if match and match.group(1):
    start = int(match.group(1))
    stop = min(int(match.group(2)) + 1, size) if match.group(2) else size
  elif match and match.group(2):  # the last n bytes
    start, stop = max(size - int(match.group(2)), 0), size
  else:
    start, stop = size, size
  if start >= stop:
    return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
  headers["content-range"] = f"bytes {start}-{stop - 1}/{size}"
  return Response(data[start:stop], status_code=206, media_type="audio/wav", headers=headers)
