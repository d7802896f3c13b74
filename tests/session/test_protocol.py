"""The study protocol: grids, tuning on some listeners, held-out figures, summaries vs numpy."""

import jax
import numpy as np
import pytest

from jplaylist.session import protocol
from jplaylist.session import report as session_report
from jplaylist.session import simulator
from jplaylist.session import strategies
from jplaylist.session import study
from jplaylist.session import summary as summary_lib
from tests.session import worlds

NAMES = ["initial", "knn", "adaptive", "adaptive[no_fusion]", "oracle"]


@pytest.fixture(scope="module")
def fake_results():
  """Per-event records of 5 strategies x 60 sessions x 12 events, clearly ordered."""
  rng = np.random.default_rng(0)
  strategies_, sessions, events = len(NAMES), 60, 12
  served = rng.uniform(0.1, 0.6, (strategies_, sessions, events))
  served[1] += 0.05
  served[2] += 0.12
  served[3] += 0.10
  served[4] = np.maximum(served.max(0), 0.9)
  return dict(served_prob=served, oracle_prob=served[4],
              skipped=rng.random(served.shape) > served,
              listened=rng.random(served.shape) < served,
              switch=rng.random((sessions, events)) < 0.2,
              switch_text=rng.random((sessions, events)) < 0.5)


def _bootstrap(statistic, columns, num_resamples, seed, confidence=0.95):
  """Percentile bootstrap over sessions with numpy, the draws `bootstrap` makes."""
  num_sessions = columns[0].shape[0]
  index = np.random.default_rng(seed).integers(0, num_sessions, (num_resamples, num_sessions))
  values = np.array([statistic(*(c[i] for c in columns)) for i in index])
  alpha = 100 * (1 - confidence) / 2
  return statistic(*columns), *np.percentile(values, [alpha, 100 - alpha])


def test_best_baseline_is_the_numpy_argmax(fake_results):
  summary = summary_lib.summarize(fake_results, NAMES, num_resamples=50)
  listen = fake_results["served_prob"].mean(axis=(1, 2))
  competitors = [1, 2, 3]  # not initial, not the oracle
  expected = NAMES[competitors[int(np.argmax(listen[competitors]))]]
  assert summary_lib.best_baseline(summary, exclude=["initial", "oracle"]) == expected == "adaptive"
  assert summary_lib.best_baseline(summary, exclude=["initial", "oracle", "adaptive"]) == \
      "adaptive[no_fusion]"
  # Lower is better for the skip rate: the argmin.
  skip = fake_results["skipped"].mean(axis=(1, 2))
  assert summary_lib.best_baseline(summary, exclude=[], metric="skip_rate") == \
      NAMES[int(np.argmin(skip))]
  assert summary_lib.best_baseline(summary, exclude=NAMES) is None


def test_gain_shares_against_numpy(fake_results):
  shares = summary_lib.gain_shares(fake_results, NAMES, num_resamples=300, seed=3)
  assert set(shares) == {"knn", "adaptive", "adaptive[no_fusion]"}
  listen = fake_results["served_prob"].mean(-1)  # [S, B]
  for name in shares:
    share = lambda s, r, o: np.mean(s - r) / np.mean(o - r)
    expected = _bootstrap(share, [listen[NAMES.index(name)], listen[0], listen[4]], 300, 3)
    np.testing.assert_allclose([shares[name][k] for k in ("share", "lo", "hi")], expected,
                               rtol=1e-9)
  assert 0 < shares["knn"]["share"] < shares["adaptive"]["share"] < 1
  assert summary_lib.gain_shares(fake_results, NAMES, oracle="nobody") == {}


def test_paired_rows_against_numpy(fake_results):
  rows = summary_lib.paired_rows(fake_results, NAMES, [("adaptive[no_fusion]", "adaptive"),
                                                       ("knn", "initial")],
                                 ["listen_rate", "skip_rate", "recovery/text", "nonsense"],
                                 num_resamples=300, seed=5)
  assert [(r["a"], r["metric"]) for r in rows] == [
      ("adaptive[no_fusion]", "listen_rate"), ("adaptive[no_fusion]", "skip_rate"),
      ("adaptive[no_fusion]", "recovery/text"), ("knn", "listen_rate"), ("knn", "skip_rate"),
      ("knn", "recovery/text")]
  listen = fake_results["served_prob"].mean(-1)
  skip = fake_results["skipped"].mean(-1)
  for row in rows:
    if row["metric"] == "recovery/text":
      continue
    values = listen if row["metric"] == "listen_rate" else skip
    a, b = values[NAMES.index(row["a"])], values[NAMES.index(row["b"])]
    expected = _bootstrap(lambda x, y: np.mean(x - y), [a, b], 300, 5)
    np.testing.assert_allclose([row["diff"], row["lo"], row["hi"]], expected, rtol=1e-9)
    np.testing.assert_allclose([row["a_mean"], row["b_mean"]], [a.mean(), b.mean()])
  assert rows[0]["diff"] < 0 < rows[3]["diff"]
  # An adaptation metric: a mean over switches, sessions weighted by their count.
  from jplaylist.session import per_session  # pylint: disable=import-outside-toplevel
  metric = per_session.per_session_metrics(fake_results)["recovery/text"]
  a, b = metric.values[3], metric.values[2]
  keep = np.isfinite(a) & np.isfinite(b) & (metric.weights > 0)
  expected = np.sum((metric.weights * (a - b))[keep]) / np.sum(metric.weights[keep])
  np.testing.assert_allclose(rows[2]["diff"], expected)
  with pytest.raises(ValueError, match="'ucb'"):
    summary_lib.paired_rows(fake_results, NAMES, [("ucb", "knn")], ["listen_rate"])


def test_grids_are_crossed_and_checked_against_what_a_strategy_reads():
  grid = protocol.expand_grid("thompson", {"thompson_scale": (0.1, 1.0), "C": (0.5, 1.0, 2.0),
                                           "recency_decay": 0.9})
  assert len(grid) == 6
  assert grid[0] == ("C=0.5,thompson_scale=0.1",
                     dict(C=0.5, recency_decay=0.9, thompson_scale=0.1))
  assert protocol.expand_grid("knn", {"knn_negative": 0.25}) == [("", {"knn_negative": 0.25})]
  with pytest.raises(ValueError, match=r"sweep.knn: \['ucb_alpha'\] are not read by knn"):
    protocol.expand_grid("knn", {"knn_negative": (0.0, 1.0), "ucb_alpha": (0.1,)})
  with pytest.raises(ValueError, match="sweep.linucb: .*'thompson_scale'"):
    protocol.grids_of({"linucb": {"thompson_scale": 1.0}}, ("knn",))  # checked even unused
  with pytest.raises(ValueError, match="sweep.oracle: only learners"):
    protocol.expand_grid("oracle", {"C": 1.0})
  with pytest.raises(ValueError, match="sweep.knn.knn_negative: no values"):
    protocol.expand_grid("knn", {"knn_negative": ()})


def test_ablations_switch_their_component_off():
  full = strategies.StrategyParams.create(handover_at=3.0, text_weight=4.0, listen_weight=1.5,
                                          mix_weight=0.4)
  off = {name: full.with_values(**overrides(full))
         for name, (_, overrides) in protocol.ABLATIONS.items()}
  ramp = lambda p, b: float(strategies.handover_ramp(b, p.handover_at, p.handover_width))
  # Balanced evidence 1 (two listens, one skip ... ) up to 40.
  assert ramp(full, 1.0) < 0.5 < ramp(full, 40.0)
  assert ramp(off["no_refit"], 40.0) < 1e-6            # the classifier never takes over
  assert ramp(off["no_cold_start"], 1.0) > 1 - 1e-6    # at once with two classes
  assert float(off["equal_weights"].rules.text_weight) == 1.5
  assert float(off["no_recency"].rules.recency_decay) == 1.0
  assert float(off["no_fusion"].mix_weight) == 0.0
  # Only the named component changes.
  assert float(off["no_fusion"].handover_at) == 3.0
  assert float(off["no_refit"].rules.text_weight) == 4.0


@pytest.fixture(scope="module")
def world_and_plans():
  world = worlds.calibrated_world(num_tracks=400, num_events=8, playlist_length=24,
                                  calibration_sessions=128)
  tuning = simulator.sample_sessions(jax.random.key(1), 16, world)
  held = simulator.sample_sessions(jax.random.key(2), 16, world)
  return world, tuning, held


def test_tuning_and_held_out_listeners_are_disjoint(world_and_plans):
  _, tuning, held = world_and_plans
  assert protocol.shared_listeners(tuning, held) == 0
  # The check can fail: a plan shares every listener with itself.
  assert protocol.shared_listeners(held, held) == len(set(protocol.listener_fingerprints(held)))
  assert protocol.shared_listeners(held, held) > 1


def test_choice_is_the_tuning_argmax_and_figures_come_from_held_out(world_and_plans):
  world, tuning, held = world_and_plans
  spec = study.StudySpec(strategies=("knn", "initial", "oracle"), ranking_metrics=False,
                         sessions_per_chunk=16)
  grids = {"knn": protocol.expand_grid("knn", {"knn_negative": (0.0, 3.0)})}
  quiet = lambda _: None
  chosen = protocol.tune(world, tuning, spec, jax.random.key(3), grids, log=quiet)
  assert set(chosen) == {"knn"}
  rates = [v["listen_rate"] for v in chosen["knn"]["variants"]]
  assert rates[0] != rates[1]
  best = int(np.argmax(rates))
  assert chosen["knn"]["chosen"] == best
  assert chosen["knn"]["overrides"] == grids["knn"][best][1]
  # The tuning figure is the chosen setting's own run on the tuning listeners.
  alone = study.run(world, tuning, study.StudySpec(strategies=("knn",), ranking_metrics=False,
                                                   sessions_per_chunk=16),
                    jax.random.key(3), params=chosen["knn"]["params"], log=quiet)
  np.testing.assert_allclose(alone["served_prob"].mean(), rates[best], rtol=1e-5)

  results = protocol.held_out(world, held, spec, jax.random.key(4), chosen, ablations=(),
                              log=quiet)
  assert results["names"] == ["knn", "initial", "oracle"]
  # Held-out records: the held-out plan's switches, its playlists' tracks.
  np.testing.assert_array_equal(results["switch"], np.asarray(held.switch))
  playlists = np.asarray(held.playlist)
  assert all(np.isin(results["track"][0, b], playlists[b]).all() for b in range(16))
  assert not all(np.isin(results["track"][0, b], np.asarray(tuning.playlist)[b]).all()
                 for b in range(16))
  section = protocol.compare(results, results["names"], num_resamples=200)
  listen = results["served_prob"].mean(axis=(1, 2))
  table = section["summary"]["metrics"]["listen_rate"]["strategies"]
  np.testing.assert_allclose([table[n]["mean"] for n in results["names"]], listen, rtol=1e-6)
  top = ["knn", "initial"][int(np.argmax(listen[:2]))]
  assert section["top"] == top and section["runner_up"] == ({"knn", "initial"} - {top}).pop()
  row = next(r for r in section["comparison"] if r["metric"] == "listen_rate")
  per_session = results["served_prob"].mean(-1)
  np.testing.assert_allclose(row["diff"], np.mean(per_session[results["names"].index(top)]
                                                  - per_session[results["names"].index(
                                                      section["runner_up"])]), rtol=1e-6)
  gain = (listen[0] - listen[1]) / (listen[2] - listen[1])
  np.testing.assert_allclose(section["gain_shares"]["knn"]["share"], gain, rtol=1e-5)
  with pytest.raises(ValueError, match="unknown ablations \\['no_text'\\]"):
    protocol.held_out(world, held, spec, jax.random.key(4), chosen, ablations=("no_text",))


def test_default_check_against_the_ranking(fake_results):
  section = protocol.compare(fake_results, NAMES, num_resamples=200)
  section["names"] = NAMES
  listen = fake_results["served_prob"].mean(axis=(1, 2))
  ranking = [NAMES[s] for s in np.argsort(-listen) if NAMES[s] in ("initial", "knn",
                                                                    "adaptive")]
  check = protocol.default_check(section, default="adaptive")
  assert check["ranking"] == ranking and ranking[0] == "adaptive"
  assert check["wins"] and check["rank"] == 1 and check["adaptive_rank"] == 1
  # Adaptive is 0.07 above knn on 60 x 12 events: the CI excludes 0.
  assert check["row"]["b"] == "knn" and check["row"]["lo"] > 0 and check["clear"]
  lost = protocol.default_check(section, default="knn")
  assert not lost["wins"] and not lost["clear"] and lost["rank"] == 2
  assert lost["row"]["b"] == "adaptive" and lost["row"]["diff"] < 0
  absent = protocol.default_check(section, default="linucb")
  assert not absent["in_study"] and absent["rank"] is None and not absent["clear"]
  # The report says which, in words.
  text = " ".join(session_report.default_lines(check))
  assert "**adaptive**" in text and "It wins" in text
  text = " ".join(session_report.default_lines(lost))
  assert "does not win: it ranks 2 of 3" in text and "adaptive is best" in text
  assert "not run" in " ".join(session_report.default_lines(absent))
  assert check["settings_differ"] == {}  # no tuning in this section
  # A run reports a strategy at its tuned setting: the report says where the
  # library's default settings differ from it.
  section["tuning"] = {"knn": {"overrides": {"knn_negative": 1.0}},
                       strategies.DEFAULT_STRATEGY: {"overrides": dict(
                           strategies.DEFAULT_OVERRIDES)}}
  tuned = protocol.default_check(section, default="knn")
  assert tuned["settings_differ"] == {
      "knn_negative": (float(strategies.StrategyParams.knn_negative), 1.0)}
  assert "knn_negative 1 (default 0.5)" in " ".join(session_report.default_lines(tuned))
  same = protocol.default_check(section)  # the default strategy at its default settings
  assert same["settings_differ"] == {}
  assert strategies.DEFAULT_STRATEGY in strategies.STRATEGIES
  default = strategies.default_params()
  assert strategies.DEFAULT_OVERRIDES
  for field, value in strategies.DEFAULT_OVERRIDES.items():
    assert field in strategies.sweepable_fields(strategies.DEFAULT_STRATEGY)
    assert float(getattr(default, field)) == np.float32(value)


def test_ablations_that_tuning_already_chose_are_flagged():
  decayed = strategies.StrategyParams.create(recency_decay=0.85, mix_weight=0.5)
  assert protocol.unchanged_ablations(decayed, tuple(protocol.ABLATIONS)) == []
  no_decay = decayed.with_values(recency_decay=1.0)
  assert protocol.unchanged_ablations(no_decay, tuple(protocol.ABLATIONS)) == ["no_recency"]
  # Time decay on: removing it is a change, so the row is measured.
  timed = no_decay.with_values(time_half_life_s=600.0)
  assert protocol.unchanged_ablations(timed, ("no_recency",)) == []
