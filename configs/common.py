"""Pieces shared by experiment configs; each returns a fresh ConfigDict."""

import ml_collections


def input_pipeline(*, data_dir: str = "data", dataset: str = "demo",
                   batch_size: int = 32) -> ml_collections.ConfigDict:
  """Where the training data is and how examples are drawn (see data/pipeline.py)."""
  config = ml_collections.ConfigDict()
  config.data_dir = data_dir
  config.dataset = dataset             # data_dir/music_text/<dataset>/1.0.0
  config.train_split = "train"
  config.eval_split = "validation"
  config.batch_size = batch_size       # global; each host takes batch_size / hosts
  config.window_seconds = 10.0
  config.max_text_length = 64
  # The patent's mix of text sources, SF:LF:PL:ASET = 2:2:1:1.
  config.source_weights = ml_collections.ConfigDict(
      {"SF": 2.0, "LF": 2.0, "PL": 1.0, "ASET": 1.0})
  config.worker_count = 0
  config.vocab_path = ml_collections.FieldReference(None, field_type=str)
  return config


def model(*, audio_tower: str = "resnet", audio_variant: str = "50",
          text_variant: str = "base", embed_dim: int = 128,
          initial_temperature: float = 0.1) -> ml_collections.ConfigDict:
  """The two-tower model (jplaylist/models/two_tower.py), fields as its Model's."""
  config = ml_collections.ConfigDict()
  config.audio_tower = audio_tower           # "resnet" | "ast"
  config.audio_variant = audio_variant       # resnet: 50, 18, tiny; ast: base, small, tiny
  config.text_variant = text_variant         # base, minilm-l6, tiny
  # The frontend follows the tower: 64 mels for the ResNet, 128 for AST.
  config.frontend = "ast" if audio_tower == "ast" else "resnet"
  config.embed_dim = embed_dim
  config.initial_temperature = initial_temperature
  config.text_dropout = 0.1
  config.specaugment = ml_collections.ConfigDict(dict(
      num_time_masks=2, max_time_width=40, num_freq_masks=2, max_freq_width=8))
  return config
