"""The live session API against the study and numpy.

A replay drives `live.LiveSession` with the study's simulated sessions (the
same requests and outcomes at the same events) and must serve exactly the
study's tracks; a session saved to JSON and resumed must decide exactly as one
never saved; rejected calls name the bad value and change nothing; a seed
track and a negative request score as LinUCB's closed form says. The
patent's flute example on the same flute library is
tests/session/test_patent_example.py.
"""

import os
import re

import jax
import numpy as np
import pytest

from jplaylist import inference
from jplaylist import library_index
from jplaylist.session import background
from jplaylist.session import examples
from jplaylist.session import library as library_lib
from jplaylist.session import live
from jplaylist.session import simulator
from jplaylist.session import strategies
from jplaylist.session import study
from tests.session import worlds

FLUTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "demo_flute.npz")
# Sessions of the study replayed through the live API (the study runs 16).
REPLAYED = (0, 1, 2, 3)
# The time-only recency variant (examples.WeightRules): the session clock matters.
TIME_ONLY = dict(recency_decay=1.0, time_half_life_s=120.0)


def _prototype_embedder(world):
  """Request "prototype k" -> the study's text embedding of prototype k."""
  texts = np.asarray(world.prototypes.text)
  return lambda batch: np.stack([texts[int(t.split()[-1])] for t in batch])


@pytest.fixture(scope="module")
def replay():
  """test_study's small world and plan (so the suite compiles their programs
  once), and the study's records of the default strategy (with the time-only
  variant), adaptive (test_study's own spec) and thompson."""
  world = worlds.calibrated_world(num_tracks=600, num_events=10, playlist_length=30,
                                  calibration_sessions=256)
  plan = simulator.sample_sessions(jax.random.key(1), 16, world)
  rng = jax.random.key(2)
  default = strategies.default_params()
  variants = {"": default, "time": default.with_values(**TIME_ONLY)}
  quiet = lambda _: None
  # One Newton step per event: thompson's decisions then depend on the fit
  # each event warm-starts from (the live API must carry it as the study does).
  spec = study.StudySpec(strategies=(strategies.DEFAULT_STRATEGY, "thompson"),
                         sessions_per_chunk=8, ranking_metrics=False, num_newton=1)
  records = [study.run(world, plan, spec, rng, params=default, log=quiet,
                       variants={strategies.DEFAULT_STRATEGY: list(variants.items())}),
             study.run(world, plan, study.StudySpec(strategies=("adaptive",),
                                                    sessions_per_chunk=8),
                       rng, params=default, log=quiet)]
  results = {name: np.concatenate([r[name] for r in records]) for name in ("track", "kind")}
  results["names"] = records[0]["names"] + records[1]["names"]
  results["switch_text"] = records[0]["switch_text"]
  results["num_newton"] = [spec.num_newton] * len(records[0]["names"]) + [
      study.StudySpec.num_newton]
  return world, plan, rng, results, variants


def _live_replay(world, plan, rng, results, row, params, session):
  """Drives a LiveSession through one session of the study; returns its served tracks."""
  name = results["names"][row]
  ids = world.library.info.ids
  session_plan = plan.session(session)
  playlist = np.asarray(session_plan.playlist)
  taste = background.from_history(world.library.embeddings, session_plan.history_track,
                                  session_plan.history_kind)
  session_key = jax.random.fold_in(rng, session)  # the study's per-session key
  player = live.LiveSession(world.library, _prototype_embedder(world),
                            strategy=name.split("[")[0], params=params,
                            candidates=[ids[i] for i in playlist], taste=taste,
                            rng=session_key, max_examples=study.max_examples(plan),
                            num_newton=results["num_newton"][row])
  player.start()
  events_key = jax.random.split(session_key)[1]
  served = []
  for event in range(world.config.num_events):
    if bool(session_plan.switch[event] & session_plan.text_request[event]):
      player.request(f"prototype {int(session_plan.prototype[event])}")
    (track_id, _), = player.next(1)
    served.append(ids.index(track_id))
    track = int(results["track"][row, session, event])
    kind = int(results["kind"][row, session, event])
    # The study's outcome with its played fraction: `respond` with the study's
    # key for this event and P(accept) 1 or 0 as the listener decided.
    _, respond_key = jax.random.split(jax.random.fold_in(events_key, event))
    accepted = kind in (examples.LISTEN, examples.LIKE)
    again, fraction, _ = simulator.respond(respond_key, float(accepted), world.config)
    assert int(again) == kind, (name, session, event)
    seconds = float(fraction) * float(world.library.duration_s[track])
    if accepted:
      got = player.listened(ids[track], seconds, liked=kind == examples.LIKE)
    else:
      got = player.skipped(ids[track], seconds, disliked=kind == examples.DISLIKE)
    assert got == kind, (name, session, event)
  return served


def test_live_sessions_replay_the_study_exactly(replay):
  world, plan, rng, results, variants = replay
  replayed = list(REPLAYED)
  # The premise: every outcome kind and some requests occur.
  assert set(np.unique(results["kind"][:, replayed])) == {
      examples.LISTEN, examples.SKIP, examples.LIKE, examples.DISLIKE, examples.PARTIAL}
  assert results["switch_text"][replayed].sum() >= 3
  # The time-only variant decides differently: the session clock matters.
  names = results["names"]
  default_row = names.index(strategies.DEFAULT_STRATEGY)
  time_row = names.index(strategies.DEFAULT_STRATEGY + "[time]")
  assert np.any(results["track"][default_row, replayed] != results["track"][time_row, replayed])
  for row, name in enumerate(names):
    params = variants["time"] if name.endswith("[time]") else variants[""]
    for session in REPLAYED:
      served = _live_replay(world, plan, rng, results, row, params, session)
      np.testing.assert_array_equal(served, results["track"][row, session],
                                    err_msg=f"{name}, session {session}")
      if session == REPLAYED[0]:
        compiled = live._score._cache_size()  # pylint: disable=protected-access
    # Later sessions reuse the first one's compiled scoring program.
    assert live._score._cache_size() == compiled, name  # pylint: disable=protected-access


def test_a_resumed_session_decides_as_one_never_saved(replay):
  world, plan, _, _, _ = replay
  ids = world.library.info.ids
  playlist = [ids[i] for i in np.asarray(plan.session(0).playlist)]
  # The shapes and settings of the replay's thompson sessions: no new compile.
  options = dict(strategy="thompson", candidates=playlist, rng=7, num_newton=1,
                 max_examples=study.max_examples(plan))
  embed = _prototype_embedder(world)
  kept = live.LiveSession(world.library, embed, **options).start(text="more prototype 3")
  outcomes = iter([None, 0.5, 200.0, 2.0, None, 1.0, None, 90.0, None])

  def play(session, track_id, outcome):
    return (session.listened(track_id, outcome) if outcome is None or outcome > 100
            else session.skipped(track_id, outcome, disliked=outcome == 0.5))

  for event in range(4):
    (track_id, _), = kept.next(1)
    play(kept, track_id, next(outcomes))
    if event == 1:
      kept.request("less prototype 5")
  kept.next(3)  # scored but not yet observed: the resumed session recomputes it
  saved = kept.to_json()
  resumed = live.LiveSession.from_json(saved, world.library, embed)
  assert resumed.to_json() == saved
  for outcome in outcomes:
    first, second = kept.next(5), resumed.next(5)
    assert first == second
    play(kept, first[0][0], outcome)
    play(resumed, first[0][0], outcome)
  assert resumed.to_json() == kept.to_json()


# ------------------------------------------------------------------ the flute library


# History slots of the flute-library sessions (one compiled program per
# strategy; small solves); the tests that fill them see the ring drop the oldest.
FLUTE_SLOTS = 8


@pytest.fixture(scope="module")
def flute():
  """(library, ensembles [N], embedder of "flute strings piano" words)."""
  index = library_index.load(FLUTE)
  library = library_lib.library_from_index(index)
  ensemble = np.array([a["ensemble"] for a in index.attributes])
  embeddings = np.asarray(library.embeddings)

  def embed(texts):  # a word -> the normalised mean of the tracks whose ensemble names it
    means = [embeddings[[t in e for e in ensemble]].mean(axis=0) for t in texts]
    return np.stack([m / np.linalg.norm(m) for m in means])

  return library, ensemble, embed


def test_outcome_kinds_and_the_clock(flute):
  library, _, embed = flute
  ids = library.info.ids
  durations = np.asarray(library.duration_s, np.float64)
  session = live.LiveSession(library, embed, max_examples=FLUTE_SLOTS).start()
  calls = [("listened", None, {}), ("skipped", 0.02, {}), ("skipped", 0.3, {}),
           ("skipped", 0.8, {}), ("listened", None, {"liked": True}),
           ("skipped", 0.01, {"disliked": True}), ("listened", 1.7, {})]
  # Fractions under 5% are skips, over half listens, between partial plays.
  expected = [examples.LISTEN, examples.SKIP, examples.PARTIAL, examples.LISTEN,
              examples.LIKE, examples.DISLIKE, examples.LISTEN]
  elapsed = 0.0
  for track, (call, share, flags), kind in zip(range(len(calls)), calls, expected):
    seconds = None if share is None else share * float(durations[track])
    assert getattr(session, call)(ids[track], seconds, **flags) == kind, (call, share)
    elapsed += min(1.0 if share is None else share, 1.0) * durations[track]
  assert session.event == len(calls)
  np.testing.assert_allclose(session.elapsed, elapsed, rtol=1e-6)
  served = {track_id for track_id, _ in session.next(len(ids))}
  assert served == set(ids[len(calls):])


def _linucb_one_positive(cand, x, params):
  """LinUCB's scores [N] after one positive example x [d] of weight text_weight.

  Ridge regression on y = 1 in closed form (numpy): A = ridge I + w x x^T,
  theta = A^-1 w x, score = c . theta + alpha sqrt(c^T A^-1 c).
  """
  w, ridge, alpha = (float(v) for v in (params.rules.text_weight, params.ucb_ridge,
                                        params.ucb_alpha))
  a_inv = np.linalg.inv(ridge * np.eye(len(x)) + w * np.outer(x, x))
  return cand @ (a_inv @ (w * x)) + alpha * np.sqrt(np.einsum("nd,de,ne->n", cand, a_inv,
                                                              cand))


def test_a_seed_track_is_a_positive_query_that_leads(flute):
  library, _, embed = flute
  ids, cand = library.info.ids, np.asarray(library.embeddings, np.float64)
  session = live.LiveSession(library, embed, max_examples=FLUTE_SLOTS)
  ranked = session.start(seed_track=ids[5]).next(len(ids))
  want = _linucb_one_positive(cand, cand[5], strategies.default_params())
  got = np.array([score for _, score in ranked])
  np.testing.assert_allclose(got, want[[ids.index(t) for t, _ in ranked]], atol=1e-5)
  assert np.all(np.diff(got) <= 0)
  assert ranked[0][0] == ids[5]  # not played: it leads, as in a seeded playlist


def test_a_negative_request_pushes_its_words_away(flute):
  """"Less piano!" is a negative example at the embedding of "piano": kNN's
  query is then -knn_negative times that embedding."""
  library, ensemble, embed = flute
  ids, cand = library.info.ids, np.asarray(library.embeddings, np.float64)
  session = live.LiveSession(library, embed, strategy="knn", max_examples=FLUTE_SLOTS)
  ranked = session.start(text="Less piano!").next(len(ids))
  piano = embed(["piano"])[0].astype(np.float64)
  want = -float(strategies.StrategyParams.create().knn_negative) * cand @ piano
  got = np.array([score for _, score in ranked])
  np.testing.assert_allclose(got, want[[ids.index(t) for t, _ in ranked]], atol=1e-5)
  order = ensemble[[ids.index(t) for t, _ in ranked]]
  assert order[0] != "flute with piano" and order[-1] == "flute with piano"


def test_rejected_calls_name_the_value_and_change_nothing(flute):
  library, _, embed = flute
  ids = library.info.ids
  with pytest.raises(live.UnknownTrackError, match="nope"):
    live.LiveSession(library, embed, candidates=[ids[0], "nope"])
  with pytest.raises(live.SessionError, match="ucb"):
    live.LiveSession(library, embed, strategy="ucb")
  with pytest.raises(live.SessionError, match="taste"):
    live.LiveSession(library, embed, taste=np.ones(3))
  with pytest.raises(live.SessionError, match="max_examples=0"):
    live.LiveSession(library, embed, max_examples=0)
  session = live.LiveSession(library, embed, max_examples=FLUTE_SLOTS)
  before = session.to_json()
  for call in (lambda: session.next(1), lambda: session.request("more flute"),
               lambda: session.listened(ids[0])):
    with pytest.raises(live.SessionError, match="start"):
      call()
  assert session.to_json() == before
  session.start(text="flute")
  session.listened(ids[3])
  ranked = session.next(3)
  saved = session.to_json()
  bad = [(live.SessionError, "already started", lambda: session.start(text="piano")),
         (live.UnknownTrackError, "no-such-track", lambda: session.listened("no-such-track")),
         (live.SessionError, re.escape(ids[3]), lambda: session.skipped(ids[3], 1.0)),
         (live.SessionError, "names nothing", lambda: session.request("   ")),
         (live.SessionError, "names nothing", lambda: session.request("less")),
         (live.SessionError, "201 characters.*200", lambda: session.request("f" * 201)),
         (live.SessionError, "k=0", lambda: session.next(0)),
         (live.SessionError, "k='3'", lambda: session.next("3")),
         (live.SessionError, "seconds=-1.0", lambda: session.skipped(ids[4], -1.0)),
         (live.SessionError, "seconds=nan", lambda: session.skipped(ids[4], float("nan"))),
         (live.SessionError, "seconds=None", lambda: session.skipped(ids[4], None))]
  for error, message, call in bad:
    with pytest.raises(error, match=message):
      call()
    assert session.to_json() == saved, message
  assert session.next(3) == ranked
  # A text embedder that fails the shape check rejects the request whole.
  broken = live.LiveSession.from_json(saved, library, lambda texts: np.zeros((1, 3)))
  with pytest.raises(live.SessionError, match=r"'flute'.*\(1, 3\)"):
    broken.request("more flute")
  assert broken.to_json() == saved
  # Every candidate played: next says so.
  for track_id, _ in session.next(len(ids)):
    session.listened(track_id)
  with pytest.raises(live.SessionError, match=f"all {len(ids)} candidates"):
    session.next(1)
  other = library_lib.library_from_index(library_index.LibraryIndex(
      ids=list(ids[:-1]), embeddings=np.asarray(library.embeddings)[:-1],
      attributes=[{}] * (len(ids) - 1), meta={}))
  with pytest.raises(live.SessionError, match=f"{len(ids) - 1} tracks"):
    live.LiveSession.from_json(saved, other, embed)


def test_from_workdir_embeds_requests_with_the_text_tower(trained_workdir, tmp_path):
  """The production path: a trained workdir's text tower and an index file."""
  model = inference.load(trained_workdir, batch_size=4)
  flute_words = model.embed_text(["flute"])[0]
  rng = np.random.default_rng(0)
  embeddings = rng.standard_normal((6, flute_words.shape[0])).astype(np.float32)
  embeddings[2] = flute_words  # the track nearest to the request
  path = library_index.LibraryIndex(
      ids=[f"t{i}" for i in range(6)], embeddings=embeddings,
      attributes=[{"duration_s": 100.0 + i} for i in range(6)], meta={}).save(
          str(tmp_path / "index.npz"))
  session = live.from_workdir(trained_workdir, path).start(text="More flute.")
  ranked = session.next(6)
  unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
  want = _linucb_one_positive(unit.astype(np.float64), flute_words.astype(np.float64),
                             strategies.default_params())
  np.testing.assert_allclose([s for _, s in ranked],
                             want[[int(t[1:]) for t, _ in ranked]], atol=1e-4)
  assert ranked[0][0] == "t2"
  # Durations come from the index's "duration_s": 40 s of 102 s is a partial play.
  assert session.skipped("t2", 40.0) == examples.PARTIAL
  np.testing.assert_allclose(session.elapsed, 40.0)
  bad = library_index.LibraryIndex(ids=["a"], embeddings=np.ones((1, 129), np.float32),
                                   attributes=[{}], meta={}).save(str(tmp_path / "bad.npz"))
  with pytest.raises(live.SessionError, match="128 dimensions.*bad.npz holds 129"):
    live.from_workdir(trained_workdir, bad)
