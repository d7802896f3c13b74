r"""Highlight model: a CRNN with attention over time classifying the demo styles.

  python -m launch.prepare_data --dataset=demo          # build the corpus first
  python -m launch.train --config=configs/highlights.py --workdir=workdirs/highlights
  python -m launch.train --config=configs/highlights.py:runlocal=True --workdir=/tmp/hl

Issue 15, item 4: the convolutional-recurrent network with attention
(jplaylist/models/crnn.py) trained by the classifier trainer
(jplaylist/trainers/classifier.py) on a track-level label, here each
recording's `style` attribute; its attention curve over 25-ms frames is what
highlight extraction weights by energy. Any other single-valued attribute
works with its own classes (`--config.labels.field=genre
--config.labels.classes=...`); a list-valued attribute (instruments) also
needs `--config.labels.multi_label=True`. `runlocal` runs a few steps on 4-s
windows in seconds (tests, smoke checks).
"""

from configs import common
from jplaylist.data.demo import catalogue

# The demo corpus's styles, read from its catalogue so they cannot drift.
DEMO_STYLES = tuple(sorted({c.style for c in catalogue.COLLECTIONS.values()}))


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, runlocal="False", variant="small", rnn="gru")
  runlocal = common.is_true(args["runlocal"])
  config = common.ml_collections.ConfigDict()
  config.trainer = "classifier"
  config.input = common.input_pipeline(batch_size=32)
  config.labels = common.ml_collections.ConfigDict(dict(
      field="style", classes=DEMO_STYLES, multi_label=False))
  config.model = common.ml_collections.ConfigDict(dict(
      variant=args["variant"],        # tiny | small | base (crnn.VARIANTS)
      rnn=args["rnn"],                # gru | lstm
      bidirectional=True,
      dropout=0.1,
      frontend="resnet",              # 64 Slaney mels
      frames_per_second=40.0,         # 25-ms frames: the attention curve's rate
  ))
  config.optimizer = common.optimizer(learning_rate=1e-3, warmup_steps=50,
                                      weight_decay=1e-4)
  common.training(config, num_train_steps=600, log_every=20, checkpoint_every=200,
                  eval_every=200)
  config.eval_batches = 2
  # Another classifier run's parameters; strict=False keeps this run's own
  # where shapes differ (a head for other classes).
  config.warm_start = common.ml_collections.ConfigDict(dict(workdir="", strict=True))
  if runlocal:
    config.input.batch_size = 8
    config.input.window_seconds = 4.0
    config.model.variant = "tiny"
    common.runlocal_training(config)
  return config
