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
