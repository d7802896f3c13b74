"""Session examples: buffers, labels, and each weight rule against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jplaylist.session import examples as ex

DIM = 4


def _history(events, max_examples=8):
  """events: (kind, step, time) tuples; example i's embedding is i + 1."""
  history = ex.History.empty(max_examples, DIM)
  for i, (kind, step, time) in enumerate(events):
    x = jnp.full((DIM,), i + 1.0)
    if kind == ex.TEXT:
      history = history.append_text(x, step, time)
    else:
      history = history.append_track(x, kind, step, time)
  return history


def _numpy_weights(events, rules, now_step, now_time, max_examples=8):
  by_kind = {ex.LISTEN: rules["listen_weight"], ex.SKIP: rules["skip_weight"],
             ex.LIKE: rules["like_weight"], ex.DISLIKE: rules["dislike_weight"],
             ex.TEXT: rules["text_weight"], ex.PARTIAL: 0.0}
  out = np.zeros(max_examples)
  for i, (kind, step, time) in enumerate(events):
    out[i] = (by_kind[kind] * rules["recency_decay"] ** (now_step - step)
              * 0.5 ** ((now_time - time) / rules["time_half_life_s"]))
  return out


EVENTS = [(ex.TEXT, 0, 0.0), (ex.LISTEN, 1, 200.0), (ex.SKIP, 2, 205.0),
          (ex.LIKE, 3, 400.0), (ex.DISLIKE, 4, 410.0), (ex.PARTIAL, 5, 500.0),
          (ex.LISTEN, 6, 700.0)]
DEFAULTS = dict(text_weight=3.0, like_weight=2.0, listen_weight=1.0, skip_weight=1.0,
                dislike_weight=2.0, recency_decay=0.85, time_half_life_s=np.inf)


def test_append_fills_slots_in_order_with_labels_from_kind():
  history = _history(EVENTS)
  np.testing.assert_array_equal(history.mask, [1, 1, 1, 1, 1, 1, 1, 0])
  np.testing.assert_array_equal(history.label[:7], [1, 1, 0, 1, 0, 0, 1])
  np.testing.assert_array_equal(history.is_audio[:7], [0, 1, 1, 1, 1, 1, 1])
  np.testing.assert_array_equal(history.kind[:7], [k for k, _, _ in EVENTS])
  np.testing.assert_array_equal(history.step[:7], np.arange(7))
  np.testing.assert_array_equal(history.x[:7, 0], np.arange(1, 8))
  assert int(history.num_examples) == 7 and int(history.num_dropped) == 0


def test_invalid_append_is_a_no_op_and_full_buffer_counts_drops():
  history = _history(EVENTS[:2], max_examples=2)
  same = history.append_track(jnp.ones(DIM) * 9, ex.LIKE, 5, 1.0, valid=False)
  jax.tree.map(np.testing.assert_array_equal, same, history)
  full = history.append_track(jnp.ones(DIM) * 9, ex.LIKE, 5, 1.0)
  # The oldest example (slot 0) gives way to the newest.
  np.testing.assert_array_equal(full.x, [[9.0] * DIM, [2.0] * DIM])
  np.testing.assert_array_equal(full.step, [5, 1])
  assert int(full.num_dropped) == 1 and int(full.next_slot) == 1


def test_append_under_jit_and_vmap():
  appended = jax.jit(jax.vmap(
      lambda valid: ex.History.empty(3, DIM).append_track(jnp.ones(DIM), ex.SKIP, 0, 0.0,
                                                          valid)))(jnp.array([True, False]))
  np.testing.assert_array_equal(appended.mask[:, 0], [True, False])
  np.testing.assert_array_equal(appended.label[:, 0], [0.0, 0.0])


def test_play_kind_thresholds():
  fraction = np.array([0.0, 0.049, 0.05, 0.3, 0.5, 0.51, 1.0, 0.01, 0.9])
  liked = np.array([0, 0, 0, 0, 0, 0, 0, 1, 0], bool)
  disliked = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1], bool)
  expected = [ex.SKIP, ex.SKIP, ex.PARTIAL, ex.PARTIAL, ex.PARTIAL, ex.LISTEN, ex.LISTEN,
              ex.LIKE, ex.DISLIKE]
  np.testing.assert_array_equal(ex.play_kind(fraction, liked, disliked), expected)
  # A different skip threshold moves the boundary.
  assert int(ex.play_kind(0.08, skip_threshold=0.1)) == ex.SKIP


@pytest.mark.parametrize("overrides", [
    dict(recency_decay=1.0),                                  # kind rule alone
    dict(recency_decay=0.7),                                  # + recency by position
    dict(recency_decay=1.0, time_half_life_s=300.0),          # + recency by time
    dict(recency_decay=0.9, time_half_life_s=120.0, text_weight=5.0, like_weight=4.0),
])
def test_weights_match_numpy(overrides):
  values = dict(DEFAULTS, **overrides)
  rules = ex.WeightRules.create(**values)
  got = ex.weights(_history(EVENTS), rules, now_step=7, now_time=800.0)
  np.testing.assert_allclose(got, _numpy_weights(EVENTS, values, 7, 800.0), rtol=1e-6)


def test_weight_rules_order_examples_as_the_issue_asks():
  rules = ex.WeightRules.create()
  same_time = [(ex.TEXT, 3, 0.0), (ex.LIKE, 3, 0.0), (ex.LISTEN, 3, 0.0), (ex.LISTEN, 0, 0.0),
               (ex.PARTIAL, 3, 0.0)]
  w = np.asarray(ex.weights(_history(same_time), rules, now_step=3, now_time=0.0))
  assert w[0] > w[1] > w[2] > w[3] > 0  # text > like > listen > older listen
  assert w[4] == 0 and np.all(w[5:] == 0)  # partial plays and empty slots


def test_weights_vmap_over_rules_equals_loop():
  history = _history(EVENTS)
  decays = jnp.array([1.0, 0.8, 0.5])
  rules = jax.vmap(lambda d: ex.WeightRules.create().replace(recency_decay=d))(decays)
  swept = jax.jit(jax.vmap(lambda r: ex.weights(history, r, 7, 800.0)))(rules)
  for i, decay in enumerate(np.asarray(decays)):
    values = dict(DEFAULTS, recency_decay=float(decay))
    np.testing.assert_allclose(swept[i], _numpy_weights(EVENTS, values, 7, 800.0), rtol=1e-6)


def test_evidence_counts_labelled_examples():
  assert float(ex.evidence(_history(EVENTS))) == 6.0  # 7 used, one PARTIAL
  assert float(ex.evidence(ex.History.empty(5, DIM))) == 0.0
