"""Waveform to [CLS]: our Kaldi front-end + AST tower against transformers' pipeline.

PyTorch side: `ASTFeatureExtractor` (its numpy Kaldi path, see
tests/audio/test_kaldi.py) and `ASTModel` with random weights from a tiny
ASTConfig, saved with `save_pretrained`. Our side: the two-tower model's
`embed_audio` on the same waveforms (front-end, then the AST tower), with the
tower's weights imported by `ast.load` from that folder, exactly as the
trainer's `warm_start.audio_ast` does.

Time axis: HF computes 1 + (samples - 400) // 160 frames, then pads them with
zeros (before normalising) or truncates them to `max_length`, and AST's
positions are laid out for `max_length` frames. Our front-end does the same
to `num_frames`, so the two agree when the extractor's `max_length` is our
`num_frames`: the frames our window gives (a 3-s clip: 298), more (320: 22
frames of padding), or the AudioSet preset (10 s: 998 frames padded to 1024,
the 12 x 101 grid of AudioSet checkpoints, imported without resizing).
"""

import jax
import numpy as np
import pytest
import torch
import transformers

from jplaylist.audio import kaldi
from jplaylist.models import ast
from jplaylist.models import two_tower
from tests.audio.test_kaldi import recording
from tests.models.test_ast import _randomise as randomise

ATOL = 1e-4
SAMPLE_RATE = 16_000
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero")


def _hf_model(max_length, seed=0):
  """A tiny ASTModel with every parameter redrawn (HF zeroes tokens and positions)."""
  config = transformers.ASTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=128, num_mel_bins=128,
                                  max_length=max_length, patch_size=16,
                                  frequency_stride=10, time_stride=10)
  return randomise(transformers.ASTModel(config), seed)


@pytest.mark.parametrize("frontend,seconds,num_frames", [
    (kaldi.KaldiConfig(window_seconds=3.0, num_frames=298), 3.0, 298),
    (kaldi.KaldiConfig(window_seconds=3.0, num_frames=320), 3.0, 320),
    ("ast_kaldi", 10.0, 1024),
])
def test_waveform_to_cls_matches_transformers(tmp_path, frontend, seconds, num_frames):
  samples = int(seconds * SAMPLE_RATE)
  waveform = recording()
  # Two different stretches of the recording: a batch, and no two rows alike.
  audio = np.stack([waveform[:samples], waveform[-samples:]])

  hf_model = _hf_model(num_frames)
  hf_model.save_pretrained(tmp_path)
  extractor = transformers.ASTFeatureExtractor(max_length=num_frames)
  inputs = extractor(list(audio), sampling_rate=SAMPLE_RATE, return_tensors="pt")
  with torch.no_grad():
    hf_cls = hf_model(inputs["input_values"]).last_hidden_state[:, 0].numpy()

  model = two_tower.Model(audio_tower="ast", audio_variant="tiny", text_variant="tiny",
                          frontend=frontend, embed_dim=16)
  variables = two_tower.init(model, jax.random.key(0), num_samples=samples)
  params = dict(variables["params"])
  params["audio"], report = ast.load(params["audio"], tmp_path)
  assert report["resized"] is None and not report["missing"] and not report["unused"]
  embeddings, state = model.apply(
      {**variables, "params": params}, audio, method=model.embed_audio,
      capture_intermediates=lambda module, _: isinstance(module, ast.ASTEncoder))
  last_hidden_state, _ = state["intermediates"]["audio"]["encoder"]["__call__"][0]
  assert last_hidden_state.shape[1] == 2 + 12 * ((num_frames - 16) // 10 + 1)
  np.testing.assert_allclose(np.asarray(last_hidden_state[:, 0]), hf_cls, rtol=0, atol=ATOL)

  # And on to the joint space: the projection of HF's [CLS], L2-normalised.
  projection = params["audio"]["projection"]
  z = hf_cls @ np.asarray(projection["kernel"]) + np.asarray(projection["bias"])
  np.testing.assert_allclose(np.asarray(embeddings),
                             z / np.linalg.norm(z, axis=-1, keepdims=True),
                             rtol=0, atol=ATOL)
