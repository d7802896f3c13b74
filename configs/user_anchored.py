r"""User-anchored metric learning: user branch + Siamese audio branch (issue 16).

  python -m launch.prepare_data --dataset=demo          # build the corpus first
  python -m launch.train --config=configs/user_anchored.py --workdir=workdirs/ua_metric4
  python -m launch.evaluate --workdir=workdirs/ua_metric4
  # the paper's variants and baselines:
  python -m launch.train --config=configs/user_anchored.py:negatives=1 --workdir=workdirs/ua_metric1
  python -m launch.train --config=configs/user_anchored.py:loss=binary,negatives=1 \
      --workdir=workdirs/ua_binary
  python -m launch.train --config=configs/user_anchored.py:user=lookup,negatives=1 \
      --workdir=workdirs/ua_dcue1                        # DCUE-1vs1
  python -m launch.train --config=configs/user_anchored.py:loss=multi,negatives=4 \
      --workdir=workdirs/ua_multi4
  python -m launch.train --config=configs/user_anchored.py:window=10 --workdir=workdirs/ua_w10

Arguments: loss (metric | binary | multi), negatives (n disliked tracks per
liked one: 1 or 4 in the paper), user (branch | lookup: DCUE), window (3 or
10 seconds of audio), margin (the hinge's, 0.2), steps, runlocal (a tiny
run for tests). Users are simulated from the corpus's attributes
(jplaylist/session/users.py); set config.users.interactions_path and
demographics_path (and optionally history_path) to train on your own:
  --config.users.interactions_path=likes.csv --config.users.demographics_path=users.csv
The trainer is jplaylist/trainers/user_anchored.py; the AUC, precision and
fan-recall report and the 40-d audio embedding export are
jplaylist/evaluators/user_anchored.py.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, loss="metric", negatives="4", user="branch", window="3",
                          margin="0.2", steps="300", runlocal="False")
  config = ml_collections.ConfigDict()
  config.trainer = "user_anchored"
  config.input = common.input_pipeline(batch_size=16)
  config.input.window_seconds = float(args["window"])
  config.users = ml_collections.ConfigDict(dict(
      # Where tracks come from; tracks of new_track_splits are held out
      # entirely (cold start): never in training, never in a history.
      track_splits=("train", "validation", "test"),
      new_track_splits=("test",),
      unseen_fraction=0.2,             # users held out entirely
      fractions=(0.6, 0.2, 0.2),       # seen users' interactions, per user and label
      # Simulated users (session/users.py SimSettings); ignored with a file.
      num_users=200, min_liked=10, min_disliked=10, min_exposed=30,
      history_length=20, group_weight=0.7, sharpness=8.0, seed=0,
      attributes=(),                   # default: mood, tempo class, style, ... the corpus has
      # Or the user's own (CSV with a header): user,track,liked / user,<fields> / user,track.
      interactions_path="", demographics_path="", history_path=""))
  config.model = ml_collections.ConfigDict(dict(
      user=args["user"],               # branch (history + demographics) | lookup (DCUE)
      embed_dim=40,                    # the paper's user and audio embedding size
      track_dim=64,                    # history track table
      user_hidden=(128, 64),           # leaky-ReLU layers of the user branch
      num_mels=128,
      channels=(16, 32, 64, 64, 128)))  # 5 x [conv, max-pool]
  config.loss = ml_collections.ConfigDict(dict(
      kind=args["loss"],               # metric (hinge) | binary | multi (softmax)
      negatives=int(args["negatives"]),
      margin=float(args["margin"]),    # the hinge's, on cosine similarity
      scale=5.0))                      # binary and multi: logits = scale * cosine
  config.optimizer = common.optimizer(learning_rate=1e-3, warmup_steps=20, weight_decay=1e-4)
  common.training(config, num_train_steps=int(args["steps"]), log_every=20,
                  checkpoint_every=100, eval_every=100)
  config.eval_batches = 4
  # Evaluation (evaluators/user_anchored.py): windows per track averaged
  # into its embedding, k of precision@k and of the fan recall.
  config.evaluation = ml_collections.ConfigDict(dict(
      track_windows=3, precision_k=5, fan_k=(5, 10, 20), random_init_baseline=True))
  if common.is_true(args["runlocal"]):
    config.input.batch_size = 8
    config.input.window_seconds = 1.0
    config.users.update(dict(num_users=24, min_liked=2, min_disliked=2, min_exposed=4,
                             history_length=3))
    config.model.update(dict(track_dim=8, user_hidden=(16,), num_mels=32,
                             channels=(4, 4, 8, 8, 8)))
    config.evaluation.update(dict(track_windows=1, precision_k=2, fan_k=(2, 5)))
    common.runlocal_training(config)
  return config
