"""The live session API: one listener's adaptive playlist, event by event.

The patent's adaptive playlisting (WO2024043931A1) as a player runs it, with
the study's strategies (`strategies.STRATEGIES`, default
`strategies.DEFAULT_STRATEGY` at `strategies.default_params()`) and the same
compiled functions as the study's per-session scan (`study._session`):

  start(text=..., seed_track=...)  the session's first examples (either, both
                                   or neither: then the background taste and
                                   the candidates' order alone)
  next(k)                          the k best unplayed candidates, with scores
  listened(track_id, seconds)      a track played for `seconds` (None: whole)
  skipped(track_id, seconds)       a track skipped after `seconds`
  request("more flute")            a text request ("less piano": negative)
  to_json() / LiveSession.from_json(text, library, embed_text)

Candidates are the whole library or a given list of its ids. A text is a
positive or negative example by `requests.parse_request`. A seed track is a
positive query example weighted like a request (the listener's explicit "like
this"); it is not marked played, so it leads the first `next`, as the seed
leads the study's seeded playlist. A played track's kind follows from its
played fraction exactly as the study's simulated listener's does
(`examples.play_kind`: under `skip_threshold` SKIP, over `majority` LISTEN,
between PARTIAL; `liked`/`disliked` give LIKE/DISLIKE), and the session clock
advances by fraction * duration. The Thompson draw at event t uses the study's
key, split(fold_in(events_key, t))[0] with events_key = split(rng)[1], so a
session built with the study's per-session key replays it exactly.

Bad calls raise `SessionError` (a ValueError) or `UnknownTrackError` (a
KeyError) naming the value, and change nothing in the session.

Example:

  from jplaylist.session import live
  session = live.from_workdir("workdirs/demo", "/tmp/demo_library.npz")
  session.start(text="baroque flute")
  (track_id, score), = session.next(1)
  session.skipped(track_id, seconds=4.0)
  session.request("less piano")
  saved = session.to_json()  # a server stores the text; later, maybe elsewhere:
  session = live.LiveSession.from_json(saved, session.library, session.embed_text)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jplaylist import inference
from jplaylist import library_index
from jplaylist.session import examples
from jplaylist.session import library as library_lib
from jplaylist.session import requests
from jplaylist.session import simulator
from jplaylist.session import strategies
from jplaylist.session import study

FORMAT = "jplaylist.session.live/1"
# History slots of a live session: a full history drops its oldest example,
# which at the default recency decay (0.85 per event) weighs under 1e-4 by then.
MAX_EXAMPLES = 64
EmbedText = Callable[[Sequence[str]], Any]


class SessionError(ValueError):
  """A rejected call: bad argument or wrong moment. The session is unchanged."""


class UnknownTrackError(KeyError):
  """A track id that is not in the library. The session is unchanged."""


# Compiled once per strategy and shape, shared by every session of the process.
@functools.partial(jax.jit, static_argnames=("strategy", "num_newton"))
def _score(state, params, cand, stats, event, elapsed, events_key, *, strategy, num_newton):
  score_key, _ = jax.random.split(jax.random.fold_in(events_key, event))
  return strategies.score(strategy, state, params, cand, stats, event, elapsed, score_key,
                          num_newton=num_newton)


_observe_text = jax.jit(strategies.observe_text)
_observe_track = jax.jit(strategies.observe_track)
_candidate_stats = jax.jit(strategies.candidate_stats)


def as_library(library) -> library_lib.Library:
  """A `library.Library` (embeddings normalised as the study's) from either kind."""
  if isinstance(library, library_index.LibraryIndex):
    return library_lib.library_from_index(library)
  return library


def _fingerprint(library: library_lib.Library) -> str:
  digest = hashlib.sha256("\n".join(library.info.ids).encode())
  digest.update(str(library.embeddings.shape).encode())
  return digest.hexdigest()[:16]


def _encode(tree) -> dict[str, dict]:
  """Every leaf of a pytree as {dtype, shape, base64 of its little-endian bytes}."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    array = np.asarray(leaf)
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    out[jax.tree_util.keystr(path)] = {"dtype": array.dtype.name, "shape": list(array.shape),
                                       "data": base64.b64encode(little.tobytes()).decode()}
  return out


def _decode(encoded: dict, template, what: str):
  """`template` with every leaf read from `encoded`; a missing or misshapen leaf raises."""
  paths, treedef = jax.tree_util.tree_flatten_with_path(template)
  leaves = []
  for path, leaf in paths:
    name = jax.tree_util.keystr(path)
    entry = encoded.get(name)
    expected = (np.asarray(leaf).dtype.name, list(np.shape(leaf)))
    if entry is None or (entry["dtype"], entry["shape"]) != expected:
      raise SessionError(f"{what}{name}: expected dtype and shape {expected}, got "
                         f"{entry and (entry['dtype'], entry['shape'])}")
    dtype = np.dtype(entry["dtype"]).newbyteorder("<")
    data = np.frombuffer(base64.b64decode(entry["data"]), dtype).reshape(entry["shape"])
    leaves.append(jnp.asarray(data.astype(data.dtype.newbyteorder("="))))
  unexpected = set(encoded) - {jax.tree_util.keystr(path) for path, _ in paths}
  if unexpected:
    raise SessionError(f"{what}: unexpected fields {sorted(unexpected)}")
  return jax.tree_util.tree_unflatten(treedef, leaves)


class LiveSession:
  """One listener's session over a library; see the module docstring.

  Args:
    library: a `library_index.LibraryIndex` or `library.Library` ([N, d]
      embeddings, durations, ids); a server builds it once for all sessions.
    embed_text: texts -> [n, d] text embeddings in the audio space (e.g.
      `inference.load(workdir).embed_text`).
    strategy: one of `strategies.STRATEGIES`.
    params: its settings (default `strategies.default_params()`).
    candidates: ids the session serves from, in order (ties go to the first);
      None: the whole library in its order.
    taste: [d] background model of the listener's earlier sessions
      (`background.from_history`); None: none (zeros).
    rng: key or int seed (Thompson's draws; the study passes the session's key).
    max_examples: history slots T.
    num_newton: Newton iterations per refit (the study's default).
    skip_threshold, majority: played fractions of an early skip and of a
      listen (the study's `simulator.SimConfig` defaults).
  """

  def __init__(self, library, embed_text: EmbedText, *,
               strategy: str = strategies.DEFAULT_STRATEGY,
               params: strategies.StrategyParams | None = None,
               candidates: Sequence[str] | None = None, taste=None, rng=0,
               max_examples: int = MAX_EXAMPLES,
               num_newton: int = study.StudySpec.num_newton,
               skip_threshold: float = simulator.SimConfig.skip_threshold,
               majority: float = simulator.SimConfig.majority):
    if strategy not in strategies.STRATEGIES:
      raise SessionError(f"strategy {strategy!r}: expected one of {strategies.STRATEGIES}")
    if not 0.0 <= skip_threshold <= majority <= 1.0:
      raise SessionError(f"need 0 <= skip_threshold ({skip_threshold}) <= majority "
                         f"({majority}) <= 1")
    self.library = as_library(library)
    self.embed_text = embed_text
    self.strategy, self.num_newton = strategy, int(num_newton)
    self.params = strategies.default_params() if params is None else params
    self.skip_threshold, self.majority = float(skip_threshold), float(majority)
    self._index = self.library.info.row_of  # built once per library, not per session
    dim = self.library.embeddings.shape[1]
    if candidates is None:
      self.candidates, self._cand = None, np.arange(self.library.num_tracks)
      self._cand_embeddings = self.library.embeddings
    else:
      self.candidates = [str(c) for c in candidates]
      if not self.candidates or len(set(self.candidates)) < len(self.candidates):
        raise SessionError(f"candidates: expected distinct library ids, got "
                           f"{len(self.candidates)} ({len(set(self.candidates))} distinct)")
      self._cand = np.array([self._track(c) for c in self.candidates])
      self._cand_embeddings = self.library.embeddings[self._cand]
    self._position = {int(index): pos for pos, index in enumerate(self._cand)}
    self._stats = _candidate_stats(self._cand_embeddings)
    taste = np.zeros(dim, np.float32) if taste is None else np.asarray(taste, np.float32)
    if taste.shape != (dim,) or not np.all(np.isfinite(taste)):
      raise SessionError(f"taste: expected [{dim}] finite values, got shape {taste.shape}")
    if isinstance(max_examples, bool) or not isinstance(max_examples, (int, np.integer)) \
        or max_examples < 1:
      raise SessionError(f"max_examples={max_examples!r}: expected an integer >= 1")
    key = jax.random.key(rng) if isinstance(rng, (int, np.integer)) else rng
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):  # a raw uint32 key
      key = jax.random.wrap_key_data(key)
    self._events_key = jax.random.split(key)[1]  # as study._session: (shuffle, events)
    self._state = strategies.init_state(int(max_examples), dim, taste)
    self._played: list[int] = []       # library indices, in order
    self._played_set: set[int] = set()
    self._played_mask = np.zeros(len(self._cand), bool)
    self.event, self.elapsed, self.started = 0, np.float32(0.0), False
    self._scored = None                # (scores [C], state after scoring) at this event

  # ------------------------------------------------------------------ calls

  def start(self, text: str | None = None, seed_track: str | None = None) -> LiveSession:
    """Opens the session with a request and/or a seed track (or neither)."""
    if self.started:
      raise SessionError("start: the session has already started")
    state = self._state
    if seed_track is not None:
      seed = self.library.embeddings[self._track(seed_track)]
      state = _observe_text(state, seed, jnp.int32(self.event), jnp.float32(self.elapsed),
                            jnp.bool_(True), jnp.float32(1.0))
    if text is not None:
      state = self._with_request(state, text)
    self._state, self._scored, self.started = state, None, True
    return self

  def request(self, text: str) -> None:
    """A text request before the next track ("more flute", "less piano")."""
    self._check_started("request")
    self._state, self._scored = self._with_request(self._state, text), None

  def next(self, k: int = 1) -> list[tuple[str, float]]:
    """The k best unplayed candidates, best first: [(track_id, score)].

    The first is the study's pick (the first of tied best scores); fewer
    than k come back when fewer are left.
    """
    self._check_started("next")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
      raise SessionError(f"next: k={k!r}; expected an integer >= 1")
    left = int(np.sum(~self._played_mask))
    if left == 0:
      raise SessionError(f"next: all {len(self._cand)} candidates have been played")
    scores = np.asarray(self._score()[0])
    masked = np.where(self._played_mask, -np.inf, scores)
    best = np.argsort(-masked, kind="stable")[:min(int(k), left)]
    return [(self.library.info.ids[self._cand[i]], float(scores[i])) for i in best]

  def listened(self, track_id: str, seconds: float | None = None, *, liked: bool = False
               ) -> int:
    """A track played for `seconds` (None: to its end); returns its `examples` kind.

    Any library track may be reported (one the listener picked is an example
    too); a candidate is then never served again.
    """
    return self._played_track("listened", track_id, seconds, liked=liked)

  def skipped(self, track_id: str, seconds: float, *, disliked: bool = False) -> int:
    """A track skipped after `seconds`; returns its `examples` kind."""
    return self._played_track("skipped", track_id, seconds, disliked=disliked)

  # ------------------------------------------------------------------ internals

  def _check_started(self, call: str) -> None:
    if not self.started:
      raise SessionError(f"{call}: call start() first")

  def _track(self, track_id) -> int:
    index = self._index.get(track_id if isinstance(track_id, str) else None)
    if index is None:
      raise UnknownTrackError(f"unknown track id {track_id!r} (the library has "
                              f"{self.library.num_tracks} tracks)")
    return index

  def _with_request(self, state, text):
    try:
      parsed = requests.parse_request(text)
    except ValueError as error:
      raise SessionError(str(error)) from error
    embedding = np.asarray(self.embed_text([parsed.text]), np.float32)
    dim = self.library.embeddings.shape[1]
    if embedding.shape != (1, dim) or not np.all(np.isfinite(embedding)):
      raise SessionError(f"embed_text({[parsed.text]!r}) gave shape {embedding.shape} "
                         f"(finite: {np.all(np.isfinite(embedding))}); expected (1, {dim})")
    return _observe_text(state, embedding[0], jnp.int32(self.event),
                         jnp.float32(self.elapsed), jnp.bool_(True),
                         jnp.float32(requests.label(parsed)))

  def _mark_played(self, index: int) -> None:
    self._played.append(index)
    self._played_set.add(index)
    if index in self._position:
      self._played_mask[self._position[index]] = True

  def _score(self):
    """(scores [C], state after scoring) at this event, computed once per event."""
    if self._scored is None:
      self._scored = _score(self._state, self.params, self._cand_embeddings, self._stats,
                            jnp.int32(self.event), jnp.float32(self.elapsed),
                            self._events_key, strategy=self.strategy,
                            num_newton=self.num_newton)
    return self._scored

  def _played_track(self, call, track_id, seconds, *, liked=False, disliked=False) -> int:
    self._check_started(call)
    index = self._track(track_id)
    if index in self._played_set:
      raise SessionError(f"{call}: track {track_id!r} has already been played in this session")
    duration = np.float32(self.library.duration_s[index])
    if seconds is None and call == "listened":
      fraction = np.float32(1.0)
    else:
      number = isinstance(seconds, (int, float, np.number)) and not isinstance(seconds, bool)
      if not number or not np.isfinite(seconds) or seconds < 0:
        raise SessionError(f"{call}: seconds={seconds!r} for {track_id!r}; expected a "
                           "finite number >= 0")
      fraction = np.minimum(np.float32(seconds) / duration, np.float32(1.0))
    kind = int(examples.play_kind(fraction, liked, disliked, skip_threshold=self.skip_threshold,
                                  majority=self.majority))
    # As the study: the learner refits at every event before the outcome is
    # added (the fit warm-starts the next event's), and the example is
    # stamped when the track ended.
    _, state = self._score()
    elapsed = np.float32(self.elapsed + fraction * duration)
    self._state = _observe_track(state, self.params, self.library.embeddings[index],
                                 jnp.int32(kind), jnp.int32(self.event), jnp.float32(elapsed))
    self._mark_played(index)
    self.event, self.elapsed, self._scored = self.event + 1, elapsed, None
    return kind

  # ------------------------------------------------------------------ JSON

  def to_json(self) -> str:
    """The whole session (learner state, played tracks, clock, key, settings) as JSON."""
    ids = self.library.info.ids
    return json.dumps({
        "format": FORMAT, "library": _fingerprint(self.library), "strategy": self.strategy,
        "num_newton": self.num_newton, "skip_threshold": self.skip_threshold,
        "majority": self.majority, "candidates": self.candidates, "started": self.started,
        "event": self.event, "elapsed": float(self.elapsed),
        "played": [ids[i] for i in self._played],
        "rng": _encode(jax.random.key_data(self._events_key)),
        "params": _encode(self.params), "state": _encode(self._state)}, sort_keys=True)

  @classmethod
  def from_json(cls, text: str, library, embed_text: EmbedText) -> LiveSession:
    """A session saved by `to_json`, resumed on the same library.

    Raises:
      SessionError: not a saved session, a missing or misshapen field, or a
        different library (ids or dimension) than it was saved against.
    """
    try:
      saved = json.loads(text)
    except (TypeError, json.JSONDecodeError) as error:
      raise SessionError(f"from_json: not JSON ({error})") from error
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
      raise SessionError(f"from_json: expected format {FORMAT!r}, got "
                         f"{saved.get('format') if isinstance(saved, dict) else type(saved)}")
    library = as_library(library)
    try:
      if saved["library"] != _fingerprint(library):
        raise SessionError(f"from_json: saved against library {saved['library']}; this "
                           f"library ({library.num_tracks} tracks) is {_fingerprint(library)}")
      session = cls(library, embed_text, strategy=saved["strategy"],
                    params=_decode(saved["params"], strategies.default_params(), "params"),
                    candidates=saved["candidates"], num_newton=saved["num_newton"],
                    skip_threshold=saved["skip_threshold"], majority=saved["majority"],
                    max_examples=saved["state"][".gram"]["shape"][0])
      session._state = _decode(saved["state"], session._state, "state")
      key_data = _decode(saved["rng"], jax.random.key_data(session._events_key), "rng")
      session._events_key = jax.random.wrap_key_data(key_data)
      for track in saved["played"]:
        session._mark_played(session._track(track))
      session.event, session.started = int(saved["event"]), bool(saved["started"])
      session.elapsed = np.float32(saved["elapsed"])
    except KeyError as error:
      if isinstance(error, UnknownTrackError):
        raise
      raise SessionError(f"from_json: missing field {error}") from error
    return session


def from_workdir(workdir: str, index_path: str, **options) -> LiveSession:
  """A new session over the index at `index_path`, requests embedded by the text
  tower of the trained `workdir` (`inference.load`); options as `LiveSession`'s.
  A server holding many sessions loads both once and builds `LiveSession`s."""
  index = library_index.load(index_path)
  model = inference.load(workdir)
  if model.model.embed_dim != index.embeddings.shape[1]:
    raise SessionError(f"{workdir} embeds text in {model.model.embed_dim} dimensions; "
                       f"{index_path} holds {index.embeddings.shape[1]}-dimensional tracks")
  return LiveSession(index, model.embed_text, **options)
