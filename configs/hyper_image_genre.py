r"""The hyper-image genre CNN (issue 16): a small CNN over a clip's stacked features.

  python -m launch.prepare_data --dataset=demo          # build the corpus first
  python -m launch.train --config=configs/hyper_image_genre.py --workdir=workdirs/hyper_cnn
  python -m launch.train --config=configs/hyper_image_genre.py:runlocal=True --workdir=/tmp/hc
  python -m launch.cross_validate --config=configs/hyper_image_genre.py --workdir=workdirs/hyper_cv
  python -m launch.cross_validate --config=configs/hyper_image_genre.py:model=mresnet \
      --workdir=workdirs/mresnet_cv

The hyper-image paper's network (jplaylist/models/hyper_cnn.py) over chroma,
cyclic tempogram, mel spectrogram, MFCC, spectral contrast and tonnetz
(jplaylist/audio/hyper_image.py, computed on device inside the model),
trained by the classifier trainer with momentum SGD on a track-level label:
the demo corpus's `style` (its closest thing to a genre; any other
single-valued attribute works, as in configs/highlights.py). The 192-d layer
before the output is the song embedding. `model=mresnet` is its comparison:
the M-ResNet over log-mel with a linear output, trained the same way.
`runlocal` runs a few steps on 2-s windows (tests, smoke checks).
`launch.cross_validate` trains one model per fold of `cross_validation`.
"""

from configs import common
from configs import highlights


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, runlocal="False", model="hyper_cnn")
  config = common.ml_collections.ConfigDict()
  config.trainer = "classifier"
  config.input = common.input_pipeline(batch_size=32)
  config.labels = common.ml_collections.ConfigDict(dict(
      field="style", classes=highlights.DEMO_STYLES, multi_label=False))
  if args["model"] == "hyper_cnn":
    config.model = common.ml_collections.ConfigDict(dict(
        kind="hyper_cnn",
        sample_rate=16_000,             # the dataset's
        filters=64,
        hidden=(384, 192),              # fc1, fc2 (the embedding)
        dropout=0.0,
        # jplaylist.audio.hyper_image.HyperImageConfig fields to override.
        features=common.ml_collections.ConfigDict()))
  elif args["model"] == "mresnet":
    # The comparison: the contrastive model's audio tower (its CPU-sized
    # variant) over log-mel, trained the same way.
    config.model = common.ml_collections.ConfigDict(dict(
        kind="mresnet", sample_rate=16_000, variant="tiny", embed_dim=128, num_mels=64,
        pooling="mean"))
  else:
    raise ValueError(f"model={args['model']!r}: hyper_cnn or mresnet")
  config.optimizer = common.optimizer(learning_rate=1e-2, warmup_steps=20, weight_decay=1e-4)
  config.optimizer.kind = "sgd"
  config.optimizer.momentum = 0.9
  common.training(config, num_train_steps=600, log_every=20, checkpoint_every=200,
                  eval_every=200)
  config.eval_batches = 2
  # launch/cross_validate.py: folds of these splits, grouped by composition.
  config.cross_validation = common.ml_collections.ConfigDict(dict(
      num_folds=10, pool="train+validation+test"))
  config.warm_start = common.ml_collections.ConfigDict(dict(workdir="", strict=True))
  if common.is_true(args["runlocal"]):
    config.input.batch_size = 8
    config.input.window_seconds = 2.0
    common.runlocal_training(config)
  return config
