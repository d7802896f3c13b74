r"""A session simulation study: strategies compared over thousands of simulated sessions.

  python -m launch.simulate --config=configs/session_study.py --output_dir=/tmp/study
  python -m launch.simulate --config=configs/session_study.py:library=demo \
      --config.library.index=workdirs/demo/library_train.npz \
      --config.library.text_workdir=workdirs/demo --output_dir=workdirs/demo/study
  python -m launch.simulate --config=configs/session_study.py:runlocal=True --output_dir=/tmp/s

`library=synthetic` (default) draws a clustered 128-d library; `library=demo`
reads a library index written by `launch.embed` and embeds the listeners'
text requests ("switch to fast bowed strings") with the model's text tower.
The simulator is calibrated so that a shuffled playlist is skipped as often as
on real services (24% early, 47.5% before the end). `sweep` entries run the
adaptive strategy at several hyper-parameter values in the same compiled call.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, library="synthetic", runlocal="False")
  if args["library"] not in ("synthetic", "demo"):
    raise ValueError(f"library must be synthetic or demo, got {args['library']!r}")
  runlocal = common.is_true(args["runlocal"])
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Where the tracks come from (jplaylist/session/study.py: make_world).
  config.library = ml_collections.ConfigDict()
  config.library.kind = args["library"]
  config.library.index = ""               # .npz from launch.embed (library=demo)
  config.library.text_workdir = ""        # model whose text tower embeds requests
  config.library.num_tracks = 10_000      # synthetic
  config.library.dim = 128                # synthetic
  config.library.num_clusters = 16        # synthetic genres
  config.library.prototypes = "kmeans"    # or "attributes" (needs attribute_names)
  config.library.num_prototypes = 32
  config.library.attribute_names = ()     # e.g. ("mood", "style")

  # The simulated listener (jplaylist/session/simulator.py: SimConfig).
  config.sim = ml_collections.ConfigDict(dict(
      num_events=50, bag_size=6, active_per_session=3, playlist_length=100,
      seeding="seed_neighbours", switch_probability=0.04, text_probability=0.5))
  config.calibrate = True                 # fit the skip rates of a shuffle
  config.early_skip_rate = 0.24
  config.skip_before_end_rate = 0.475

  # The study.
  config.num_sessions = 2000
  config.candidates = "playlist"          # re-sort the playlist, or "library"
  config.strategies = ("adaptive", "adaptive_mlp", "knn", "linucb", "thompson", "popularity",
                       "initial", "shuffle", "oracle")
  config.baseline = "initial"             # paired differences against it
  config.ranking_metrics = True           # nDCG@10 / P@10 of the remainder, every event
  config.sessions_per_chunk = 500
  # Adaptive-strategy variants run in the same call: name -> overrides of
  # jplaylist.session.learners.StrategyParams / examples.WeightRules fields.
  config.sweep = ml_collections.ConfigDict({
      "equal_weights": dict(text_weight=1.0),
      "no_recency": dict(recency_decay=1.0),
  })
  config.num_resamples = 2000             # bootstrap resamples for the CIs

  if args["library"] == "demo":
    config.library.num_prototypes = 12
    config.library.prototypes = "attributes"
    config.library.attribute_names = ("instrument_families", "style")
    config.sim.playlist_length = 60
    config.sim.num_events = 30
    config.sim.bag_size = 4
    config.num_sessions = 2000
  if runlocal and args["library"] == "demo":  # a handful of recordings
    config.library.prototypes = "kmeans"
    config.library.num_prototypes = 3
    config.library.attribute_names = ()
  if runlocal:
    # Fewer strategies: each is its own compiled program.
    config.strategies = ("adaptive", "knn", "initial", "oracle")
    config.library.num_tracks = 500
    config.library.dim = 16
    if args["library"] != "demo":
      config.library.num_prototypes = 8
    config.sim.num_events = 4 if args["library"] == "demo" else 8
    config.sim.playlist_length = 6 if args["library"] == "demo" else 20
    config.sim.bag_size = 3
    config.sim.active_per_session = 2
    config.num_sessions = 16
    config.sessions_per_chunk = 8
    config.num_resamples = 100
  return config
