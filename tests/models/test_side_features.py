"""The ResNet's clip-level paths (key profiles, onset autocorrelation) in the two-tower model."""

import jax
import numpy as np
import pytest

from configs import demo as demo_config
from jplaylist.audio import chroma
from jplaylist.audio import frontend
from jplaylist.audio import tempo
from jplaylist.models import two_tower


@pytest.fixture(scope="module")
def model_and_variables():
  config = demo_config.get_config("runlocal=True")
  assert config.model.audio_key_profiles and config.model.audio_tempo_bands  # the demo's
  model = two_tower.build(config)
  return model, two_tower.init(model, jax.random.key(0))


def test_padding_does_not_reach_the_embedding(model_and_variables):
  model, variables = model_and_variables
  rng = np.random.default_rng(0)
  audio = (rng.normal(size=(2, 160_000)) * 3000).astype(np.int16)
  lengths = np.array([160_000, 70_000], np.int32)
  other = audio.copy()
  other[1, 70_000:] = (rng.normal(size=90_000) * 9000).astype(np.int16)
  a = model.apply(variables, audio, lengths, method=model.embed_audio)
  b = model.apply(variables, other, lengths, method=model.embed_audio)
  np.testing.assert_allclose(a, b, atol=1e-6)
  # Without lengths the padding is audio, and the embedding moves.
  c = model.apply(variables, other, method=model.embed_audio)
  assert np.abs(np.asarray(c[1]) - np.asarray(a[1])).max() > 1e-3


def test_side_features_are_what_the_modules_compute(model_and_variables):
  model, variables = model_and_variables
  rng = np.random.default_rng(1)
  audio = rng.normal(size=(2, 160_000)).astype(np.float32)
  bound = model.bind(variables)
  profile = chroma.pitch_class_profile(audio)
  keys = bound.key_profiles(profile)
  assert keys.shape == (2, model.audio_key_profiles)
  bands = bound.tempo_bands()
  assert bands == tempo.lag_bands(0.025, model.audio_tempo_bands)  # 400 frames per 10 s
  acf = tempo.onset_autocorrelation(frontend.log_mel(audio, model.frontend), bands)
  assert acf.shape == (2, len(bands))
  # The projection reads the pooled trunk features followed by these.
  kernel = variables["params"]["audio"]["projection"]["kernel"]
  trunk_width = kernel.shape[0] - keys.shape[1] - acf.shape[1]
  assert trunk_width > 0 and trunk_width % 2 == 0  # mean and std pooling


def test_the_ast_tower_refuses_resnet_options():
  config = demo_config.get_config("runlocal=True")
  config.model.audio_tower = "ast"
  config.model.audio_variant = "tiny"
  config.model.frontend = "ast"
  config.model.audio_pooling = "mean"
  config.model.audio_onset_channel = False
  model = two_tower.build(config)
  with pytest.raises(ValueError, match="audio_key_profiles, audio_tempo_bands are ResNet"):
    two_tower.init(model, jax.random.key(0))
