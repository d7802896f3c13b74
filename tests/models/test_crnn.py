"""The CRNN with attention: the attention is a softmax over valid frames only
(checked against numpy from the model's own scores), the pooled head against
numpy, parameter counts against the layer formulas, variants and RNN kinds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jplaylist.models import crnn
from jplaylist.models import pooling
from jplaylist.models import two_tower

SAMPLE_RATE = 16_000


def _model(**kwargs):
  frontend = crnn.frontend_config("resnet", window_seconds=2.0, frames_per_second=40.0)
  return crnn.Model(num_classes=3, frontend=frontend, variant="tiny", **kwargs)


def _audio(lengths, seed=0):
  rng = np.random.default_rng(seed)
  audio = (rng.normal(size=(len(lengths), 2 * SAMPLE_RATE)) * 3000).astype(np.int16)
  for row, length in enumerate(lengths):
    audio[row, length:] = 0  # the pipeline's end padding
  return audio, np.asarray(lengths, np.int32)


def _numpy_softmax(scores, valid):
  out = np.zeros_like(scores, dtype=np.float64)
  for row in range(scores.shape[0]):
    s = scores[row, valid[row]].astype(np.float64)
    out[row, valid[row]] = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
  return out


def test_attention_sums_to_one_over_valid_frames_and_is_zero_on_padding():
  model = _model()
  variables = crnn.init(model, jax.random.key(0))
  audio, lengths = _audio([2 * SAMPLE_RATE, SAMPLE_RATE, 7_000])
  (logits, attention), state = model.apply(variables, audio, lengths,
                                           mutable=["intermediates"])
  attention = np.asarray(attention)
  assert logits.shape == (3, 3) and attention.shape == (3, 80)
  valid = np.asarray(pooling.frame_mask(
      two_tower.valid_samples(jnp.asarray(lengths), audio.shape[1]), model.frontend))
  counts = valid.sum(1)
  assert counts[0] == 80 and 30 < counts[1] < 40 and 5 < counts[2] < 18
  for row in range(3):  # the valid frames are a prefix
    assert valid[row, :counts[row]].all() and not valid[row, counts[row]:].any()
  np.testing.assert_allclose(attention.sum(1), 1.0, rtol=1e-5)
  assert np.all(attention[~valid] == 0.0)
  assert np.all(attention[valid] > 0.0)
  # The same softmax in numpy from the model's own scores, and the head over
  # the attention-pooled hidden states.
  scores = np.asarray(state["intermediates"]["scores"][0])
  np.testing.assert_allclose(attention, _numpy_softmax(scores, valid), rtol=1e-5, atol=1e-7)
  hidden = np.asarray(state["intermediates"]["hidden"][0], np.float64)
  head = variables["params"]["head"]
  pooled = np.einsum("bt,bth->bh", _numpy_softmax(scores, valid), hidden)
  np.testing.assert_allclose(logits, pooled @ np.asarray(head["kernel"]) + head["bias"],
                             rtol=1e-4, atol=1e-5)


def test_masked_softmax_matches_numpy_and_gives_zero_for_an_empty_row():
  rng = np.random.default_rng(1)
  scores = rng.normal(size=(3, 7)).astype(np.float32) * 30  # large: needs the max shift
  valid = np.array([[1] * 7, [1, 1, 1, 0, 0, 0, 0], [0] * 7], bool)
  out = np.asarray(crnn.masked_softmax(jnp.asarray(scores), jnp.asarray(valid)))
  np.testing.assert_allclose(out[:2], _numpy_softmax(scores[:2], valid[:2]), rtol=1e-5,
                             atol=1e-30)
  assert np.all(out[2] == 0.0) and np.all(np.isfinite(out))


def test_parameter_count_of_the_tiny_variant_follows_the_layer_formulas():
  variables = crnn.init(_model(), jax.random.key(0))
  count = sum(x.size for x in jax.tree_util.tree_leaves(variables))
  spec = crnn.VARIANTS["tiny"]
  mels, channels_in, expected = 64, 1, 0
  for channels in spec.conv_channels:
    expected += 9 * channels_in * channels + channels + 2 * channels  # conv, LayerNorm
    channels_in, mels = channels, mels // 2
  rnn_in, hidden = mels * channels_in, spec.rnn_features
  # flax GRUCell: input kernels with biases for r, z, n; recurrent kernels
  # for r, z without bias, for n with bias.
  gru = 3 * (rnn_in * hidden + hidden) + 3 * hidden * hidden + hidden
  expected += 2 * gru
  expected += 2 * hidden * spec.attention_features + spec.attention_features
  expected += spec.attention_features + 1
  expected += 2 * hidden * 3 + 3
  assert count == expected


@pytest.mark.parametrize("rnn,bidirectional", [("lstm", True), ("gru", False)])
def test_rnn_kinds_and_directions(rnn, bidirectional):
  model = _model(rnn=rnn, bidirectional=bidirectional)
  variables = crnn.init(model, jax.random.key(0))
  audio, lengths = _audio([2 * SAMPLE_RATE, SAMPLE_RATE])
  (logits, attention), state = model.apply(variables, audio, lengths,
                                           mutable=["intermediates"])
  hidden = state["intermediates"]["hidden"][0]
  assert hidden.shape[-1] == crnn.VARIANTS["tiny"].rnn_features * (2 if bidirectional else 1)
  assert logits.shape == (2, 3) and np.all(np.isfinite(logits))
  np.testing.assert_allclose(np.asarray(attention).sum(1), 1.0, rtol=1e-5)


def test_frame_rate_and_unknown_variant():
  frontend = crnn.frontend_config("resnet", window_seconds=10.0, frames_per_second=40.0)
  assert frontend.num_frames == 400 and crnn.frame_seconds(frontend) == 0.025
  with pytest.raises(ValueError, match="unknown CRNN variant 'huge'"):
    crnn.decode_variant("huge")
