r"""A session simulation study: strategies compared over thousands of simulated sessions.

  python -m launch.simulate --config=configs/session_study.py --output_dir=/tmp/study
  python -m launch.simulate --config=configs/session_study.py:library=demo \
      --config.library.index=workdirs/demo/library_train.npz \
      --config.library.text_workdir=workdirs/demo --output_dir=workdirs/demo/study
  python -m launch.simulate --config=configs/session_study.py:runlocal=True --output_dir=/tmp/s
  python -m launch.simulate --config=configs/session_study.py:library=demo,long_term=item2vec \
      --config.library.index=workdirs/demo/library.npz --output_dir=/tmp/study_item2vec

`library=synthetic` (default) draws a clustered 128-d library; `library=demo`
reads a library index written by `launch.embed` and embeds the listeners'
text requests ("switch to fast bowed strings") with the model's text tower.
The simulator is calibrated so that a shuffled playlist is skipped as often as
on real services (24% early, 47.5% before the end), under each listener model
of `listener_models` in turn. The protocol (`jplaylist/session/protocol.py`):
every learner's grid `sweep.<strategy>` (field -> values, crossed; only fields
the strategy reads) runs in one compiled call on `num_tuning_sessions`
sessions of tuning listeners; the variant with the best mean listen rate is
reported, with the baselines and adaptive's `ablations`, on `num_sessions`
sessions of other listeners. A grid is changed from the command line, e.g.
`--config.sweep.linucb.ucb_alpha="(0.0,0.5)"`. `long_term=item2vec` (or `mf`)
fuses adaptive with a ranker trained on the listeners' earlier sessions only,
and reports it against no fusion and against the background direction.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, library="synthetic", runlocal="False", long_term="background")
  if args["library"] not in ("synthetic", "demo"):
    raise ValueError(f"library must be synthetic or demo, got {args['library']!r}")
  if args["long_term"] not in ("background", "item2vec", "mf"):
    raise ValueError(f"long_term must be background, item2vec or mf, got "
                     f"{args['long_term']!r}")
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
  # Earlier sessions of each listener, served the seeded playlist in order;
  # the background model every learner starts from is learned from them.
  config.sim.history_sessions = 4
  # The listener (jplaylist/session/listeners.py): "embedding" (linear in the
  # embedding the learners use), "attributes" (preferences over ground-truth
  # attributes, never the embedding) or "mixture" (the best of the bag's
  # prototypes, not their average); popularity and fatigue add to any model.
  config.sim.listener_model = "embedding"
  config.sim.mixture_sharpness = 0.0      # "mixture": 0 = hard max over the bag
  config.sim.popularity_weight = 0.0      # logit per std of log popularity
  config.sim.fatigue_weight = 0.0         # logit per recent served track of the same group
  config.sim.fatigue_decay = 0.8          # fatigue count kept per served track
  config.calibrate = True                 # fit the skip rates of a shuffle
  config.early_skip_rate = 0.24
  config.skip_before_end_rate = 0.475

  # Listener models run in turn, each world recalibrated (SimConfig.listener_model).
  config.listener_models = ("embedding", "mixture")

  # The study: tuned on some listeners, reported on others.
  config.num_tuning_sessions = 1000       # sessions of tuning listeners (0: no tuning)
  config.num_sessions = 2000              # sessions of held-out listeners
  config.candidates = "playlist"          # re-sort the playlist, or "library"
  config.strategies = ("adaptive", "adaptive_mlp", "knn", "knn_examples", "linucb", "thompson",
                       "popularity", "initial", "shuffle", "oracle")
  config.baseline = "initial"             # paired differences against it
  config.ranking_metrics = True           # nDCG@10 / P@10 of the remainder, every event
  config.sessions_per_chunk = 500
  # Grids swept on tuning listeners, one compiled call per strategy: field ->
  # values, crossed (jplaylist.session.strategies.StrategyParams and
  # examples.WeightRules fields the strategy reads). adaptive_mlp starts from
  # adaptive's choice: its grid decides the model by session length (1e9:
  # never the MLP).
  config.sweep = ml_collections.ConfigDict(dict(
      adaptive=dict(handover_at=(2.0, 6.0), mix_weight=(0.25, 0.5),
                    recency_decay=(0.85, 1.0)),
      adaptive_mlp=dict(mlp_after=(4.0, 12.0, 1e9)),
      knn=dict(knn_negative=(0.0, 0.5, 1.0)),
      knn_examples=dict(knn_k=(1.0, 5.0), knn_negative=(0.5, 1.0)),
      linucb=dict(ucb_alpha=(0.0, 0.1, 0.5), ucb_label_offset=(0.0, 0.5)),
      thompson=dict(thompson_scale=(0.1, 0.3, 1.0)),
  ))
  # Held-out ablations of adaptive's chosen setting (protocol.ABLATIONS).
  config.ablations = ("no_refit", "equal_weights", "no_recency", "no_cold_start", "no_fusion")
  config.num_resamples = 2000             # bootstrap resamples for the CIs
  # The long-term "mix ranker" adaptive fuses with (jplaylist/session/long_term.py):
  # "background" (the background direction of the earlier sessions), or a
  # ranker learned from the earlier sessions only, "item2vec" or "mf"
  # (jplaylist/playlists/long_term.py; the held-out report then adds the
  # ablation "background_fusion" beside "no_fusion").
  config.long_term = args["long_term"]
  config.long_term_settings = ml_collections.ConfigDict(dict(
      item2vec=dict(dim=64, window=5, epochs=10, negative=5, sample=1e-3),
      mf=dict(factors=32, regularization=0.1, alpha=2.0, iterations=15)))

  if args["library"] == "demo":
    config.library.num_prototypes = 12
    config.library.prototypes = "attributes"
    config.library.attribute_names = ("instrument_families", "style")
    config.sim.playlist_length = 60
    config.sim.num_events = 30
    config.sim.bag_size = 4
    # Two listener models x (tuning + held out) in about the time one study took.
    config.num_tuning_sessions = 500
    config.num_sessions = 1500
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
    config.num_tuning_sessions = 16
    config.listener_models = ("embedding",)
    config.sweep.adaptive = dict(handover_at=(2.0, 4.0))
    config.sweep.knn = dict(knn_negative=(0.0, 0.5))
    config.sessions_per_chunk = 8
    config.num_resamples = 100
    config.long_term_settings.item2vec = dict(dim=8, window=3, epochs=2, negative=3,
                                              sample=1e-3, steps_per_call=4)
    config.long_term_settings.mf = dict(factors=4, regularization=0.1, alpha=2.0,
                                        iterations=3)
  return config
