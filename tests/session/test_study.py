"""The compiled study against an independent per-session scikit-learn replay."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from jplaylist.session import examples
from jplaylist.session import simulator
from jplaylist.session import strategies
from jplaylist.session import study
from tests.session import worlds

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def small_world():
  world = worlds.calibrated_world(num_tracks=600, num_events=10, playlist_length=30,
                                  calibration_sessions=256)
  plan = simulator.sample_sessions(jax.random.key(1), 16, world)
  return world, plan


def _replay_classifier(world, plan, records, session, params):
  """The classifier strategy of one session, replayed with numpy and scikit-learn."""
  plan_b = plan.session(session)
  library = np.asarray(world.library.embeddings)
  texts = np.asarray(world.prototypes.text)
  durations = np.asarray(world.library.duration_s)
  rules = params.rules
  kind_weight = {examples.LISTEN: float(rules.listen_weight),
                 examples.SKIP: float(rules.skip_weight), examples.LIKE: float(rules.like_weight),
                 examples.DISLIKE: float(rules.dislike_weight),
                 examples.TEXT: float(rules.text_weight), examples.PARTIAL: 0.0}
  xs, ys, kinds, steps = [], [], [], []
  playlist = np.asarray(plan_b.playlist)
  played = np.zeros(len(playlist), bool)
  served, elapsed = [], 0.0
  for event in range(world.config.num_events):
    if bool(plan_b.switch[event]) and bool(plan_b.text_request[event]):
      xs.append(texts[int(plan_b.prototype[event])]); ys.append(1.0)
      kinds.append(examples.TEXT); steps.append(event)
    weights = np.array([kind_weight[k] * float(rules.recency_decay) ** (event - s)
                        for k, s in zip(kinds, steps)])
    labels = np.array(ys)
    if len(xs) and (weights * labels).sum() > 0 and (weights * (1 - labels)).sum() > 0:
      keep = weights > 0
      model = LogisticRegression(C=float(params.C), tol=1e-10, max_iter=10_000).fit(
          np.array(xs)[keep], labels[keep], sample_weight=weights[keep])
      scores = library[playlist] @ model.coef_[0] + model.intercept_[0]
    else:  # one class (or none): the classifier's fit is degenerate; skip the check
      scores = None
    pick = int(np.asarray(records["track"])[session, event])
    if scores is not None:
      best = playlist[np.argmax(np.where(played, -np.inf, scores))]
      served.append((best, pick))
    index = int(np.flatnonzero(playlist == pick)[0])
    played[index] = True
    kind = int(np.asarray(records["kind"])[session, event])
    xs.append(library[pick]); ys.append(examples.LABEL_OF_KIND[kind])
    kinds.append(kind); steps.append(event)
    elapsed += durations[pick]
  return served


def test_classifier_decisions_equal_a_scikit_learn_replay(small_world):
  world, plan = small_world
  params = strategies.StrategyParams.create()
  spec = study.StudySpec(strategies=("classifier",), num_newton=8, sessions_per_chunk=8)
  results = study.run(world, plan, spec, jax.random.key(2), params=params,
                      log=lambda _: None)
  records = {k: results[k][0] for k in ("track", "kind")}
  checked = 0
  for session in range(plan.num_sessions):
    for best, pick in _replay_classifier(world, plan, records, session, params):
      assert best == pick
      checked += 1
  assert checked >= 40  # most events after the first skip and listen are checked


def test_sharded_study_equals_one_device(small_world):
  world, plan = small_world
  params = study.stack_variants([strategies.StrategyParams.create()])
  spec = study.StudySpec(strategies=("adaptive",), sessions_per_chunk=2)
  kwargs = dict(strategy="adaptive", spec=spec, max_examples=study.max_examples(plan))
  mesh = study.session_mesh(plan.num_sessions)
  assert mesh is not None and mesh.size == 8
  sharded = study._run_strategy(world, plan, params, jax.random.key(3), mesh=mesh, **kwargs)
  single = study._run_strategy(world, plan, params, jax.random.key(3), mesh=None, **kwargs)
  for name in ("track", "kind", "served_prob"):
    np.testing.assert_allclose(np.asarray(sharded[name]), np.asarray(single[name]), atol=1e-6)


def test_a_sweep_variant_equals_its_own_run(small_world):
  world, plan = small_world
  spec = study.StudySpec(strategies=("adaptive",), sessions_per_chunk=8)
  swept = study.run(world, plan, spec, jax.random.key(4),
                    sweep={"equal": dict(text_weight=1.0, handover_at=2.0)},
                    log=lambda _: None)
  assert swept["names"] == ["adaptive", "adaptive[equal]"]
  alone = study.run(world, plan, spec, jax.random.key(4),
                    params=strategies.StrategyParams.create(text_weight=1.0, handover_at=2.0),
                    log=lambda _: None)
  np.testing.assert_array_equal(swept["track"][1], alone["track"][0])
  assert not np.array_equal(swept["track"][0], swept["track"][1])


def test_strategies_rank_as_expected_on_a_synthetic_library():
  key = jax.random.key(5)
  library = simulator.synthetic_library(key, 2000, 32, 8)
  prototypes = simulator.make_prototypes(key, library, 12)
  config = simulator.SimConfig(num_events=20, playlist_length=80, num_prototypes=12)
  world = simulator.make_world(key, library, prototypes, config)
  world = world.replace(config=simulator.calibrate(key, world, num_sessions=512))
  plan = simulator.sample_sessions(jax.random.key(6), 256, world)
  spec = study.StudySpec(strategies=("oracle", "adaptive", "shuffle"), ranking_metrics=False,
                         sessions_per_chunk=128)
  results = study.run(world, plan, spec, jax.random.key(7), log=lambda _: None)
  listen = results["served_prob"].mean(axis=(1, 2))
  skip = results["skipped"].mean(axis=(1, 2))
  assert listen[0] > listen[1] > listen[2] + 0.05
  assert skip[1] < skip[2]
  # Shuffled playlists are skipped about as often as the simulator is calibrated to.
  assert 0.40 < skip[2] < 0.56
  # The oracle serves the best available track, so its served p is the oracle's.
  np.testing.assert_allclose(results["served_prob"][0], results["oracle_prob"][0], atol=1e-6)


def test_bad_strategy_and_candidates_are_rejected(small_world):
  world, plan = small_world
  with pytest.raises(ValueError, match="unknown strategies \\['ucb'\\]"):
    study.run(world, plan, study.StudySpec(strategies=("ucb",)), jax.random.key(0))
  with pytest.raises(ValueError, match="candidates='all'"):
    study.run(world, plan, study.StudySpec(strategies=("knn",), candidates="all"),
              jax.random.key(0))
  with pytest.raises(ValueError, match="unknown strategy parameters \\['text_wieght'\\]"):
    strategies.StrategyParams.create(text_wieght=2.0)


def test_simulate_launcher_runlocal(tmp_path):
  done = subprocess.run(
      [sys.executable, "-m", "launch.simulate", "--config=configs/session_study.py:runlocal=True",
       f"--output_dir={tmp_path}", "--config.strategies=('adaptive','initial','oracle')"],
      cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT), capture_output=True,
      text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "adaptive: skip rate" in done.stdout and f"Report: {tmp_path}/report.md" in done.stdout
  for name in ("summary.json", "report.md", "embedding/results.npz", "embedding/curves.png",
               "embedding/adaptation.png"):
    assert (tmp_path / name).stat().st_size > 0
  # Held out: the tuned strategies, then adaptive's ablations of its chosen setting.
  saved = np.load(tmp_path / "embedding" / "results.npz")
  assert list(saved["names"]) == ["adaptive", "adaptive[no_refit]", "adaptive[equal_weights]",
                                  "adaptive[no_recency]", "adaptive[no_cold_start]",
                                  "adaptive[no_fusion]", "initial", "oracle"]
  assert saved["served_prob"].shape == (8, 16, 8)
  report = (tmp_path / "report.md").read_text()
  assert "### Held-out listeners" in report and "| adaptive[no_fusion] |" in report
