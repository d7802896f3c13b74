"""The study's plots: one style per strategy whatever is drawn with it, bands, files."""

import os

import matplotlib.colors
import numpy as np
import pytest
from scipy import stats

from jplaylist.session import bands as bands_lib
from jplaylist.session import metrics
from jplaylist.session import plots
from jplaylist.session import protocol
from jplaylist.session import strategies
from jplaylist.session import study

LEARNERS = list(strategies.STRATEGIES)
SIXTEEN = (LEARNERS + list(study.BASELINES)
           + ["adaptive[no_recency]", "adaptive[equal_weights]", "knn[k=5]", "background",
              "ensemble"])


def _key(style):
  return (style.color, repr(style.linestyle), style.marker)


def _is_grey(colour):
  red, green, blue = matplotlib.colors.to_rgb(colour)
  return red == green == blue


def test_styles_distinct_and_stable():
  assert len(SIXTEEN) == 16
  full = plots.styles(SIXTEEN)
  assert len({_key(s) for s in full.values()}) == 16
  bases = {plots.split_name(n)[0] for n in SIXTEEN}
  assert len({full[b].color for b in bases}) == len(bases)  # every strategy its own colour
  rng = np.random.default_rng(0)
  for _ in range(5):  # the order of the names never matters
    order = list(rng.permutation(SIXTEEN))
    assert plots.styles(order) == full
  for _ in range(5):  # the library's strategies look the same in every plot
    subset = list(rng.choice(SIXTEEN, size=int(rng.integers(1, 16)), replace=False))
    styles = plots.styles(subset)
    for name in subset:
      if name in LEARNERS or name in study.BASELINES:
        assert styles[name] == full[name], name
  # Sweep variants: their strategy's colour, another dash, thinner.
  for variant in ("adaptive[no_recency]", "adaptive[equal_weights]"):
    assert full[variant].color == full["adaptive"].color
    assert full[variant].linestyle != full["adaptive"].linestyle
    assert full[variant].linewidth < full["adaptive"].linewidth
  assert plots.styles(["knn[k=5]"])["knn[k=5]"].color == full["knn"].color
  # The study's five ablations: each its own dash and its own marker, so two
  # variants are never told apart by dash density alone.
  ablations = [f"adaptive[{a}]" for a in protocol.ABLATIONS]
  drawn = plots.styles(["adaptive"] + ablations)
  assert len({repr(drawn[a].linestyle) for a in ablations}) == len(ablations)
  assert len({drawn[a].marker for a in ablations} - {None}) == len(ablations)
  # Sixteen names the library does not know are still drawn apart.
  unknown = plots.styles([f"strategy {s}" for s in range(16)])
  assert len({_key(s) for s in unknown.values()}) == 16
  assert len({s.color for s in unknown.values()}) >= 15
  assert plots.styles([f"strategy {s}" for s in range(16)][::-1]) == unknown
  with pytest.raises(ValueError, match="duplicate strategy name 'knn'"):
    plots.styles(["knn", "adaptive", "knn"])


def test_baselines_muted():
  assert tuple(plots.BASELINES) == tuple(study.BASELINES)
  full = plots.styles(SIXTEEN)
  learner_widths = [full[n].linewidth for n in LEARNERS]
  for name in study.BASELINES:
    assert full[name].muted and _is_grey(full[name].color), name
    assert full[name].linestyle != "-" and full[name].linewidth < min(learner_widths)
    assert full[name].kwargs()["zorder"] < full["adaptive"].kwargs()["zorder"]
  for name in LEARNERS + ["background", "ensemble"]:
    assert not full[name].muted and not _is_grey(full[name].color), name


@pytest.fixture(scope="module")
def results():
  rng = np.random.default_rng(1)
  num_strategies, num_sessions, num_events = 3, 120, 16
  served = rng.uniform(0, 0.6, (num_strategies, num_sessions, num_events))
  served[2] += 0.3
  mask = np.arange(num_events) < rng.integers(6, num_events + 1, num_sessions)[:, None]
  return dict(served_prob=served, oracle_prob=np.maximum(served.max(0), 0.95),
              skipped=rng.random(served.shape) > served,
              listened=rng.random(served.shape) < 0.5 * served, mask=mask,
              switch=rng.random((num_sessions, num_events)) < 0.2,
              switch_text=rng.random((num_sessions, num_events)) < 0.5)


def test_per_event_bands_match_numpy(results):
  lo, hi = metrics.per_event_bands(results)["skip_rate"]
  curves = metrics.per_event_curves(results)
  for s in range(3):
    for event in (0, 7, 15):
      reached = results["mask"][:, event]
      values = results["skipped"][s, reached, event].astype(float)
      half = 1.96 * stats.sem(values)
      np.testing.assert_allclose([lo[s, event], hi[s, event]],
                                 [values.mean() - half, values.mean() + half], rtol=1e-12)
      np.testing.assert_allclose(curves["skip_rate"][s, event], values.mean())
  reward_lo, _ = metrics.per_event_bands(results)["cumulative_reward"]
  reached = results["mask"][:, 9]
  values = np.cumsum(np.where(results["mask"], results["served_prob"][1], 0), -1)[reached, 9]
  np.testing.assert_allclose(reward_lo[1, 9], values.mean() - 1.96 * stats.sem(values))


def test_kaplan_meier_band_against_references():
  rng = np.random.default_rng(2)
  # No censoring: the empirical CDF, and Greenwood's variance is the binomial one.
  delay = rng.integers(0, 8, (2, 400))
  estimate, lo, hi = bands_lib.kaplan_meier_band(delay, np.zeros_like(delay, bool), 6)
  cdf = (delay[..., None] <= np.arange(6)).mean(1)
  np.testing.assert_allclose(estimate, cdf, atol=1e-12)
  half = 1.96 * np.sqrt(cdf * (1 - cdf) / 400)
  np.testing.assert_allclose(lo, np.clip(cdf - half, 0, 1), atol=1e-12)
  np.testing.assert_allclose(hi, np.clip(cdf + half, 0, 1), atol=1e-12)
  # With censoring: the textbook product-limit loop.
  censored = rng.random((2, 400)) < 0.3
  estimate, lo, hi = bands_lib.kaplan_meier_band(delay, censored, 6)
  for s in range(2):
    survival, greenwood = 1.0, 0.0
    for t in range(6):
      at_risk = np.sum((delay[s] > t) | ((delay[s] == t) & ~censored[s]))
      events = np.sum((delay[s] == t) & ~censored[s])
      survival *= 1 - events / at_risk
      greenwood += events / (at_risk * (at_risk - events))
      half = 1.96 * survival * np.sqrt(greenwood)
      np.testing.assert_allclose([estimate[s, t], lo[s, t], hi[s, t]],
                                 [1 - survival, 1 - survival - half, 1 - survival + half])


def test_moving_average_against_a_loop():
  rng = np.random.default_rng(4)
  values = rng.random((3, 11))
  values[1, 4:6] = np.nan
  for window in (1, 2, 5):
    smooth = bands_lib.moving_average(values, window)
    for s in range(3):
      for event in range(11):
        part = values[s, max(0, event - window // 2):event + (window - 1) // 2 + 1]
        finite = part[np.isfinite(part)]
        np.testing.assert_allclose(smooth[s, event], finite.mean() if finite.size else np.nan,
                                   rtol=1e-12)
  assert np.isnan(bands_lib.moving_average(np.full((1, 4), np.nan), 3)).all()
  with pytest.raises(ValueError, match="window=0"):
    bands_lib.moving_average(values, 0)


def test_adaptation_bands(results):
  curves = metrics.adaptation_curves(results, horizon=6)
  bands = bands_lib.adaptation_bands(results, horizon=6)
  delays = metrics.adaptation_delays(results)
  rng = np.random.default_rng(3)
  for group, selected in (("text", delays["has_text"]), ("no_text", ~delays["has_text"])):
    lo, hi = bands[group]["ratio"]
    # Delta-method bands are centred on the ratio of means ...
    np.testing.assert_allclose((lo + hi) / 2, curves[group]["ratio"], rtol=1e-12)
    # ... and about as wide as a bootstrap over switches.
    inside = delays["inside"][selected, 2]
    served = delays["served"][2, selected, 2][inside]
    oracle = delays["oracle"][2, selected, 2][inside]
    draws = rng.integers(0, len(served), (4000, len(served)))
    ratios = served[draws].sum(1) / oracle[draws].sum(1)
    boot = np.percentile(ratios, [2.5, 97.5])
    assert abs((hi[2, 2] - lo[2, 2]) / (boot[1] - boot[0]) - 1) < 0.15
    km_lo, km_hi = bands[group]["listened_by"]
    estimate, _, _ = bands_lib.kaplan_meier_band(delays["first_listen"][:, selected],
                                             delays["first_listen_censored"][:, selected], 6)
    np.testing.assert_allclose(estimate, curves[group]["listened_by"], equal_nan=True)
    finite = np.isfinite(estimate)
    assert np.all(km_lo[finite] <= estimate[finite]) and np.all(estimate[finite] <= km_hi[finite])


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 5000


def test_plots_are_written(results, tmp_path):
  names = ["adaptive", "adaptive[no_recency]", "initial"]
  written = plots.study_plots(results, names, str(tmp_path / "plots"))
  assert sorted(written) == ["Adaptation after mood switches", "Metrics over events"]
  assert all(_is_png(path) for path in written.values())
  means, lows, highs = [0.7, 0.62, 0.9, 0.55], [0.68, 0.6, 0.88, 0.5], [0.72, 0.64, 0.92, 0.6]
  path = plots.plot_heldout(["adaptive", "knn", "oracle", "initial"], means, lows, highs,
                            str(tmp_path / "heldout.png"), title="held-out")
  assert _is_png(path)
  with pytest.raises(ValueError, match="lows has 3 values for 4 names"):
    plots.plot_heldout(["adaptive", "knn", "oracle", "initial"], means, lows[:3], highs,
                       str(tmp_path / "bad.png"))
  with pytest.raises(ValueError, match=r"mean outside \[low, high\] for \['knn'\]"):
    plots.plot_heldout(["adaptive", "knn"], [0.7, 0.9], [0.6, 0.6], [0.8, 0.8],
                       str(tmp_path / "bad.png"))
  with pytest.raises(ValueError, match="no curves named"):
    plots.plot_curves(metrics.per_event_curves(results), str(tmp_path / "bad.png"), names,
                      metrics=["skip_rate", "hit_rate"])
