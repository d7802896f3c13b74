"""The study's plots and markdown report: files written, numbers in them."""

import os

import numpy as np
import pytest

from jplaylist.session import metrics
from jplaylist.session import report

NAMES = ["shuffle", "knn", "classifier"]


@pytest.fixture(scope="module")
def results():
  rng = np.random.default_rng(0)
  strategies, sessions, events = 3, 80, 24
  served = rng.uniform(0, 0.6, (strategies, sessions, events))
  served[2] += 0.3  # clearly better than the baseline
  oracle = np.maximum(served.max(0), 0.95)
  return dict(served_prob=served, oracle_prob=oracle,
              skipped=rng.random(served.shape) > served,
              listened=rng.random(served.shape) < served,
              ndcg=rng.random(served.shape), precision=rng.random(served.shape),
              switch=rng.random((sessions, events)) < 0.15,
              switch_text=rng.random((sessions, events)) < 0.5)


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 5000


def test_plots_are_written(results, tmp_path):
  curves = metrics.per_event_curves(results)
  path = report.plot_curves(curves, str(tmp_path / "plots" / "curves.png"), NAMES)
  assert _is_png(path)
  path = report.plot_adaptation(metrics.adaptation_curves(results),
                                str(tmp_path / "adaptation.png"), NAMES)
  assert _is_png(path)
  with pytest.raises(ValueError, match="strategy_names"):
    report.plot_curves(curves, str(tmp_path / "bad.png"), NAMES[:2])


def test_markdown_holds_the_numbers(results, tmp_path):
  summary = metrics.summarize(results, NAMES, baseline="shuffle", num_resamples=300)
  plot = str(tmp_path / "plots" / "curves.png")
  report.plot_curves(metrics.per_event_curves(results), plot, NAMES)
  path = report.write_markdown(summary, {"metric curves": plot}, str(tmp_path / "report.md"))
  text = open(path).read()
  rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
  for name in NAMES:
    assert name in text
  skip = summary["metrics"]["skip_rate"]["strategies"]
  line = next(line for line in text.splitlines() if line.startswith("| skip_rate |"))
  for name in NAMES:
    entry = skip[name]
    assert f"{entry['mean']:.3f} [{entry['lo']:.3f}, {entry['hi']:.3f}]" in line
  # Sums over 24 events are above 10: two decimals.
  reward = summary["metrics"]["cumulative_reward"]["strategies"]["classifier"]
  assert f"{reward['mean']:.2f} [{reward['lo']:.2f}, {reward['hi']:.2f}]" in text
  # The difference table: signed, starred where the CI excludes 0, baseline not a column.
  listen = summary["metrics"]["listen_rate"]["strategies"]["classifier"]
  assert listen["diff_lo"] > 0
  diff_row = rows["listen_rate (higher better)"]
  assert f"+{listen['diff']:.3f} [{listen['diff_lo']:.3f}, {listen['diff_hi']:.3f}] *" in diff_row
  assert diff_row.count("|") == 4  # metric, knn, classifier
  assert "first_listen/text" in rows and "recovery_censored/no_text" in rows
  assert "![metric curves](plots/curves.png)" in text


def test_markdown_without_baseline_and_undefined_values(results, tmp_path):
  summary = metrics.summarize(dict(results, auc=np.full((3, 80), np.nan)), NAMES,
                              num_resamples=100)
  path = report.write_markdown(summary, [], str(tmp_path / "report.md"))
  text = open(path).read()
  assert "Difference vs" not in text
  assert "| auc | n/a [n/a, n/a] |" in text
