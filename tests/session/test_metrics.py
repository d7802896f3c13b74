"""Session metrics against scikit-learn, direct numpy and hand-built sessions."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sk

from jplaylist.session import metrics

# ------------------------------------------------------------------ references


def _numpy_ranking(scores, true_prob, available, k, threshold):
  """Tie-averaged nDCG@k and precision@k by sorting the available items (McSherry & Najork)."""
  scores, true_prob = scores[available], true_prob[available]
  if not len(scores):
    return np.nan, np.nan
  relevant = (true_prob >= threshold).astype(np.float64)
  discount = np.where(np.arange(len(scores)) < k, 1 / np.log2(np.arange(len(scores)) + 2), 0)
  cumulative = np.r_[0.0, np.cumsum(discount)]
  dcg = hits = 0.0
  start = 0
  for value in np.unique(scores)[::-1]:  # tie groups, best first
    group = scores == value
    end = start + group.sum()
    dcg += true_prob[group].mean() * (cumulative[end] - cumulative[start])
    hits += relevant[group].mean() * max(0, min(end, k) - min(start, k))
    start = end
  ideal = np.sort(true_prob)[::-1] @ discount
  return (dcg / ideal if ideal > 0 else 0.0), hits / min(k, len(scores))


def _numpy_ranking_first_index(scores, true_prob, available, k):
  """nDCG@k with ties broken towards the lower index, as lax.top_k does."""
  index = np.flatnonzero(available)
  order = index[np.argsort(-scores[index], kind="stable")][:k]
  discount = 1 / np.log2(np.arange(len(order)) + 2)
  ideal = np.sort(true_prob[index])[::-1][:k] @ discount
  return true_prob[order] @ discount / ideal


def _random_ranking_inputs(seed, num_sessions=24, num_items=40):
  rng = np.random.default_rng(seed)
  scores = np.round(rng.normal(size=(num_sessions, num_items)), 1)  # many ties
  scores[0] = 0.0                                                   # cold start: all tied
  scores[1] = rng.normal(size=num_items)                            # no ties
  true_prob = rng.uniform(size=(num_sessions, num_items))
  true_prob[2] = np.round(true_prob[2])                             # binary gains
  available = rng.random((num_sessions, num_items)) < rng.uniform(0.2, 1, (num_sessions, 1))
  for row, count in zip(range(3, 9), (1, 2, 3, 9, 10, 11)):         # small remainders
    available[row] = False
    available[row, rng.choice(num_items, count, replace=False)] = True
  available[9] = False                                              # empty remainder
  return scores.astype(np.float32), true_prob.astype(np.float32), available


# ------------------------------------------------------------------ ranking metrics


@pytest.mark.parametrize("seed", range(3))
def test_ranking_metrics_match_sklearn_and_numpy_under_vmap(seed):
  scores, true_prob, available = _random_ranking_inputs(seed)
  k, threshold = 10, 0.6
  ranking = jax.jit(jax.vmap(functools.partial(metrics.ranking_metrics, k=k,
                                               relevance_threshold=threshold)))
  ndcg, precision = map(np.asarray, ranking(scores, true_prob, available))
  for b in range(len(scores)):
    want_ndcg, want_precision = _numpy_ranking(scores[b], true_prob[b], available[b], k, threshold)
    if available[b].sum() >= 2:  # sklearn refuses a single document
      want_sklearn = sk.ndcg_score(true_prob[b][available[b]][None], scores[b][available[b]][None],
                                   k=k)
      assert ndcg[b] == pytest.approx(want_sklearn, abs=1e-5), b
    if available[b].any():
      assert ndcg[b] == pytest.approx(want_ndcg, abs=1e-5), b
      assert precision[b] == pytest.approx(want_precision, abs=1e-5), b
    else:
      assert np.isnan(ndcg[b]) and np.isnan(precision[b])


def test_ranking_metrics_without_tie_averaging_take_the_lower_index():
  scores, true_prob, available = _random_ranking_inputs(5)
  ranking = jax.vmap(functools.partial(metrics.ranking_metrics, k=10, average_ties=False))
  ndcg, _ = map(np.asarray, ranking(scores, true_prob, available))
  for b in range(len(scores)):
    if available[b].any():
      want = _numpy_ranking_first_index(scores[b], true_prob[b], available[b], 10)
      assert ndcg[b] == pytest.approx(want, abs=1e-5), b
  # Continuous scores have no ties: both modes agree with sklearn's ignore_ties.
  assert ndcg[1] == pytest.approx(sk.ndcg_score(true_prob[1][available[1]][None],
                                                scores[1][available[1]][None], k=10,
                                                ignore_ties=True), abs=1e-5)


def test_ranking_metrics_small_cases_by_hand():
  # Items 0 and 1 tie on top: each holds the group's mean gain 0.5 in expectation.
  ndcg, precision = metrics.ranking_metrics(jnp.array([1.0, 1.0, 0.0, 2.0]),
                                            jnp.array([0.9, 0.1, 0.5, 0.2]),
                                            jnp.array([True, True, True, False]), k=2)
  discount = 1 / np.log2(3)
  assert float(ndcg) == pytest.approx(0.5 * (1 + discount) / (0.9 + 0.5 * discount), abs=1e-6)
  assert float(precision) == pytest.approx(0.5, abs=1e-6)
  # Fewer items than k, a perfect order: both 1.
  ndcg, precision = metrics.ranking_metrics(jnp.array([3.0, 2.0, 1.0]), jnp.array([0.9, 0.8, 0.7]),
                                            jnp.ones(3, bool), k=10)
  assert float(ndcg) == pytest.approx(1.0) and float(precision) == pytest.approx(1.0)
  # No gain anywhere: nDCG 0 (as sklearn), precision 0.
  ndcg, precision = metrics.ranking_metrics(jnp.arange(5.0), jnp.zeros(5), jnp.ones(5, bool))
  assert float(ndcg) == 0.0 and float(precision) == 0.0


# ------------------------------------------------------------------ AUC


@pytest.mark.parametrize("seed", range(2))
def test_session_auc_matches_sklearn_with_ties_under_vmap(seed):
  rng = np.random.default_rng(seed)
  num_sessions, num_items = 32, 60
  relevant = rng.random((num_sessions, num_items)) < rng.uniform(0.1, 0.7, (num_sessions, 1))
  scores = np.round(relevant * rng.uniform(0, 1, (num_sessions, 1)) +
                    rng.normal(size=(num_sessions, num_items)), 1).astype(np.float32)
  scores[0] = 0.0  # all tied: 0.5
  valid = rng.random((num_sessions, num_items)) < 0.8
  valid[1] &= ~relevant[1]  # no positives: undefined
  valid[2] &= relevant[2]   # no negatives: undefined
  valid[3] = False
  valid[3, :2] = True
  relevant[3, :2] = [True, False]  # one pair
  auc = np.asarray(jax.jit(jax.vmap(metrics.session_auc))(scores, relevant, valid))
  for b in range(num_sessions):
    labels = relevant[b][valid[b]]
    if labels.all() or not labels.any():
      assert np.isnan(auc[b]), b
    else:
      assert auc[b] == pytest.approx(sk.roc_auc_score(labels, scores[b][valid[b]]), abs=1e-5), b
  assert auc[0] == pytest.approx(0.5)


# ------------------------------------------------------------------ bootstrap


def test_bootstrap_point_estimates_weights_and_nan():
  rng = np.random.default_rng(0)
  a = rng.normal(size=50)
  mean, lo, hi = metrics.bootstrap_ci(a, 500, seed=1)
  assert mean == pytest.approx(a.mean()) and lo < mean < hi
  weights = rng.integers(1, 4, size=50)
  mean, lo, hi = metrics.bootstrap_ci(a, 500, seed=1, weights=weights)
  assert mean == pytest.approx(np.repeat(a, weights).mean()) and lo < mean < hi
  with_nan = a.copy()
  with_nan[:5] = np.nan
  assert metrics.bootstrap_ci(with_nan, 200)[0] == pytest.approx(a[5:].mean())
  b = a + rng.normal(size=50)
  b[7] = np.nan  # unpaired session left out
  diff = metrics.paired_bootstrap(a, b, 300, seed=2)[0]
  assert diff == pytest.approx(np.delete(a - b, 7).mean())


def test_paired_bootstrap_coverage_of_a_known_difference():
  true_diff, covered, trials = 0.3, 0, 300
  rng = np.random.default_rng(0)
  for trial in range(trials):
    session = rng.normal(0, 2, 40)  # what both strategies share
    a = session + true_diff + rng.normal(0, 1, 40)
    b = session + rng.normal(0, 1, 40)
    _, lo, hi = metrics.paired_bootstrap(a, b, 1000, seed=trial)
    covered += lo <= true_diff <= hi
  # Nominal 95%; the percentile interval runs a little short at B = 40.
  assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_width_shrinks_like_one_over_root_b():
  rng = np.random.default_rng(3)
  widths = {}
  for num_sessions in (100, 1600):
    a = rng.normal(1.0, 1.0, num_sessions)
    mean, lo, hi = metrics.bootstrap_ci(a, 2000, seed=0)
    assert lo < mean < hi  # (coverage of the true mean: the test above)
    widths[num_sessions] = hi - lo
    # Normal theory: 2 x 1.96 sd / sqrt(B).
    assert hi - lo == pytest.approx(2 * 1.96 * a.std() / np.sqrt(num_sessions), rel=0.15)
  assert 3.2 < widths[100] / widths[1600] < 4.8


def test_paired_interval_is_much_narrower_than_unpaired_when_sessions_differ():
  rng = np.random.default_rng(4)
  num_sessions, resamples = 400, 2000
  session = rng.normal(0, 3, num_sessions)
  a = session + 0.2 + rng.normal(0, 0.5, num_sessions)
  b = session + rng.normal(0, 0.5, num_sessions)
  diff, lo, hi = metrics.paired_bootstrap(a, b, resamples, seed=0)
  assert lo <= 0.2 <= hi and lo > 0
  assert hi - lo == pytest.approx(2 * 1.96 * np.std(a - b) / np.sqrt(num_sessions), rel=0.15)
  # Unpaired: the two strategies' sessions resampled independently.
  draw = np.random.default_rng(1)
  unpaired = (a[draw.integers(0, num_sessions, (resamples, num_sessions))].mean(1) -
              b[draw.integers(0, num_sessions, (resamples, num_sessions))].mean(1))
  unpaired_lo, unpaired_hi = np.percentile(unpaired, [2.5, 97.5])
  assert unpaired_lo < 0 < unpaired_hi  # the shared session effect swamps the difference
  assert hi - lo < 0.3 * (unpaired_hi - unpaired_lo)
  assert diff == pytest.approx(np.mean(a - b))


# ------------------------------------------------------------------ adaptation


def _hand_built_results():
  """2 strategies, 2 sessions of 10 events (the second ends after 7)."""
  served = np.full((2, 2, 10), 0.5)
  oracle = np.ones((2, 10))
  listened = np.zeros((2, 2, 10), bool)
  switch = np.zeros((2, 10), bool)
  text = np.zeros((2, 10), bool)
  mask = np.ones((2, 10), bool)
  # Session 0: switch without text at 2 (segment 2..5), with text at 6 (6..9).
  switch[0, [2, 6]] = True
  text[0, 6] = True
  served[:, 0, 1] = 1.0                    # before the switch: never counts
  served[:, 0, 2:6] = [0.2, 0.5, 0.95, 0.95]
  listened[:, 0, 4] = True                 # first listen 2 events after the switch at 2
  listened[:, 0, 1] = True                 # before the switch
  oracle[0, 6:] = 0.5
  served[0, 0, 6:] = [0.1, 0.2, 0.3, 0.4]  # never reaches 0.9 x 0.5: censored at 4
  served[1, 0, 6:] = [0.1, 0.2, 0.3, 0.46]
  listened[1, 0, 7] = True                 # strategy 1 listens 1 event after the switch at 6
  # Session 1: switch without text at 4, the session ends after event 6 (segment 4..6).
  mask[1, 7:] = False
  switch[1, 4] = True
  served[:, 1, 4:7] = 0.1
  listened[:, 1, 8] = True                 # masked out: does not count
  return dict(served_prob=served, oracle_prob=oracle, skipped=~listened, listened=listened,
              switch=switch, switch_text=text, mask=mask)


def test_adaptation_delays_on_hand_built_sessions():
  results = _hand_built_results()
  delays = metrics.adaptation_delays(results, window=1, recovery_fraction=0.9)
  np.testing.assert_array_equal(delays["session"], [0, 0, 1])
  np.testing.assert_array_equal(delays["event"], [2, 6, 4])
  np.testing.assert_array_equal(delays["has_text"], [False, True, False])
  np.testing.assert_array_equal(delays["segment_length"], [4, 4, 3])
  np.testing.assert_array_equal(delays["first_listen"], [[2, 4, 3], [2, 1, 3]])
  np.testing.assert_array_equal(delays["first_listen_censored"],
                                [[False, True, True], [False, False, True]])
  np.testing.assert_array_equal(delays["recovery"], [[2, 4, 3], [2, 3, 3]])
  np.testing.assert_array_equal(delays["recovery_censored"],
                                [[False, True, True], [False, False, True]])
  # A trailing window of 2: at offset 2 the mean is (0.5 + 0.95) / 2 < 0.9, at 3 it is 0.95;
  # at offset 0 the window holds the switch's event alone, not the 1.0 before it.
  delays = metrics.adaptation_delays(results, window=2, recovery_fraction=0.9)
  assert delays["recovery"][0, 0] == 3
  delays = metrics.adaptation_delays(results, window=1, recovery_fraction=0.15)
  assert delays["recovery"][0, 0] == 0


def test_per_session_adaptation_and_censored_fraction():
  session = metrics.per_session_metrics(_hand_built_results(), window=1)
  no_text = session["first_listen/no_text"]
  np.testing.assert_array_equal(no_text.values, [[2, 3], [2, 3]])
  np.testing.assert_array_equal(no_text.weights, [1, 1])
  np.testing.assert_array_equal(session["first_listen_censored/no_text"].values,
                                [[0, 1], [0, 1]])
  text = session["first_listen/text"]
  np.testing.assert_array_equal(text.values[:, 0], [4, 1])
  assert np.isnan(text.values[:, 1]).all() and list(text.weights) == [1, 0]
  np.testing.assert_array_equal(session["recovery_censored/text"].values[:, 0], [1, 0])
  # Masked events count nowhere: session 1 has 7 events.
  assert session["realised_listen_rate"].values[0, 1] == pytest.approx(0.0)
  assert session["cumulative_reward"].values[0, 1] == pytest.approx(4 * 0.5 + 3 * 0.1)
  assert session["regret"].values[0, 1] == pytest.approx(7 - (4 * 0.5 + 3 * 0.1))


def test_kaplan_meier_first_listen_curve():
  # Four switches in one session: first listens at offsets 0, 1, 3 and one censored at 2.
  listened = np.zeros((1, 1, 12), bool)
  switch = np.zeros((1, 12), bool)
  switch[0, [0, 1, 3, 5]] = True            # segments 0, 1..2, 3..4, 5..11
  listened[0, 0, [0, 2, 8]] = True          # offsets 0, 1, (none), 3
  results = dict(served_prob=np.full((1, 1, 12), 0.5), oracle_prob=np.ones((1, 12)),
                 skipped=~listened, listened=listened, switch=switch)
  curves = metrics.adaptation_curves(results, horizon=5)
  assert curves["no_text"]["num_switches"] == 4 and curves["text"]["num_switches"] == 0
  # At risk 4, 3, 1, 1: S = 3/4, 1/2, 1/2, 0.
  np.testing.assert_allclose(curves["no_text"]["listened_by"][0, :4], [0.25, 0.5, 0.5, 1.0])
  assert np.isnan(curves["no_text"]["listened_by"][0, 4])
  np.testing.assert_allclose(curves["no_text"]["ratio"][0], 0.5)


# ------------------------------------------------------------------ summary


def _random_results(seed=0, strategies=3, sessions=60, events=20):
  rng = np.random.default_rng(seed)
  served = rng.uniform(size=(strategies, sessions, events))
  served[1] = np.minimum(served[1] + 0.1, 1)
  oracle = np.maximum(served.max(0), rng.uniform(size=(sessions, events)))
  mask = np.arange(events) < rng.integers(events // 2, events + 1, (sessions, 1))
  return dict(served_prob=served, oracle_prob=oracle,
              skipped=rng.random(served.shape) < 1 - served,
              early_skipped=rng.random(served.shape) < 0.2,
              listened=rng.random(served.shape) < served,
              ndcg=np.where(rng.random(served.shape) < 0.05, np.nan, rng.random(served.shape)),
              precision=rng.random(served.shape), auc=rng.random((strategies, sessions)),
              switch=rng.random((sessions, events)) < 0.15,
              switch_text=rng.random((sessions, events)) < 0.5, mask=mask)


def test_summarize_is_json_and_matches_the_bootstrap_functions():
  results = _random_results()
  summary = metrics.summarize(results, ["x", "y", "z"], baseline="x", num_resamples=500, seed=7)
  json.dumps(summary, allow_nan=False)
  per_session = metrics.per_session_metrics(results)
  mask = results["mask"]
  want_skip = (results["skipped"] * mask).sum(-1) / mask.sum(-1)
  np.testing.assert_allclose(per_session["skip_rate"].values, want_skip)
  entry = summary["metrics"]["skip_rate"]["strategies"]["y"]
  assert (entry["mean"], entry["lo"], entry["hi"]) == pytest.approx(
      metrics.bootstrap_ci(want_skip[1], 500, seed=7))
  assert (entry["diff"], entry["diff_lo"], entry["diff_hi"]) == pytest.approx(
      metrics.paired_bootstrap(want_skip[1], want_skip[0], 500, seed=7))
  listen = summary["metrics"]["listen_rate"]["strategies"]["y"]
  assert listen["diff_lo"] > 0  # strategy y serves better tracks
  adaptation = per_session["first_listen/text"]
  entry = summary["metrics"]["first_listen/text"]["strategies"]["z"]
  assert (entry["diff"], entry["diff_lo"], entry["diff_hi"]) == pytest.approx(
      metrics.paired_bootstrap(adaptation.values[2], adaptation.values[0], 500, seed=7,
                               weights=adaptation.weights))
  delays = metrics.adaptation_delays(results)
  text = delays["has_text"]
  assert entry["mean"] is not None
  assert summary["metrics"]["first_listen/text"]["strategies"]["z"]["mean"] == pytest.approx(
      delays["first_listen"][2, text].mean())  # a mean over switches
  assert summary["metrics"]["ndcg@10"]["strategies"]["x"]["mean"] == pytest.approx(
      np.mean(np.nanmean(np.where(mask, results["ndcg"][0], np.nan), -1)))
  with pytest.raises(ValueError, match="baseline"):
    metrics.summarize(results, ["x", "y", "z"], baseline="w")


def test_oracle_per_strategy_and_per_event_curves():
  results = _random_results(1)
  per_strategy = dict(results, oracle_prob=np.stack([results["oracle_prob"] + 0.1 * s
                                                     for s in range(3)]))
  served, mask = results["served_prob"], results["mask"]
  regret = metrics.per_session_metrics(per_strategy)["regret"].values
  np.testing.assert_allclose(regret, ((per_strategy["oracle_prob"] - served) * mask).sum(-1))
  curves = metrics.per_event_curves(per_strategy)
  for s in range(3):
    for event in (0, 15, 19):
      alive = mask[:, event]
      assert curves["skip_rate"][s, event] == pytest.approx(
          results["skipped"][s, alive, event].mean())
      assert curves["cumulative_regret"][s, event] == pytest.approx(
          ((per_strategy["oracle_prob"][s] - served[s]) * mask)[alive, :event + 1].sum(-1).mean())
  assert set(curves) >= {"listen_rate", "oracle_listen_rate", "cumulative_reward", "ndcg@10",
                         "precision@10", "early_skip_rate", "realised_listen_rate"}


def test_gain_share_is_a_ratio_of_paired_means():
  rng = np.random.default_rng(3)
  reference = rng.uniform(0.3, 0.6, 400)
  oracle = reference + rng.uniform(0.1, 0.3, 400)
  strategy = reference + 0.4 * (oracle - reference) + rng.normal(0, 0.02, 400)
  share, lo, hi = metrics.gain_share(strategy, reference, oracle, 1000, seed=1)
  assert share == pytest.approx(np.mean(strategy - reference) / np.mean(oracle - reference))
  assert lo < share < hi and lo > 0.35 and hi < 0.45
  with pytest.raises(ValueError, match="gain_share"):
    metrics.gain_share(strategy, reference, oracle[:-1])
