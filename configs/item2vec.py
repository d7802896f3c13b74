r"""Item2vec and ALS on listening sequences, evaluated on next-track ranking.

  python -m launch.item2vec --config=configs/item2vec.py --from_study \
      --library=workdirs/demo/library.npz --output=workdirs/demo/item2vec
  python -m launch.item2vec --config=configs/item2vec.py --sequences=playlists.txt \
      --output=/tmp/item2vec
  python -m launch.item2vec --config=configs/item2vec.py:runlocal=True --from_study \
      --library=workdirs/demo/library.npz --output=/tmp/item2vec

`--from_study` simulates `simulation.num_listeners` listeners over the library
(`world`: the session study's simulator, jplaylist/session/study.py
build_world) and trains on the tracks each listened to in their earlier
sessions; `--sequences` reads playlists, one per line. Both may be given.
`runlocal` shrinks everything so a run takes seconds.
"""

import ml_collections

from configs import common
from configs import session_study


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, runlocal="False")
  runlocal = common.is_true(args["runlocal"])
  config = ml_collections.ConfigDict()
  config.seed = 0

  # jplaylist/playlists/item2vec.py: Item2VecConfig (gensim's Word2Vec names).
  config.item2vec = ml_collections.ConfigDict(dict(
      dim=64, window=5, negative=5, min_count=1, sample=1e-3, ns_exponent=0.75, epochs=10,
      learning_rate=0.025, min_learning_rate=1e-4, batch_size=256, batch_words=10_000,
      steps_per_call=32,
      extra_tokens="none"))
  # Library metadata as extra tokens ("composer=...") when extra_tokens is
  # "inline" or "context".
  config.extra_token_attributes = ("composer", "style", "instruments")

  # jplaylist/playlists/als.py: fit_sequences; c = 1 + alpha * plays.
  config.mf = ml_collections.ConfigDict(dict(
      factors=32, regularization=0.1, alpha=2.0, iterations=15))

  # jplaylist/playlists/evaluate.py.
  config.evaluation = ml_collections.ConfigDict(dict(
      holdout_fraction=0.1,   # sequences held out whole
      cold_fraction=0.1,      # tracks removed from every training sequence
      k=10,
      context_size=5))        # last known context tracks a query uses (0: all)

  # Simulated listeners (--from_study): their earlier sessions are the data.
  config.simulation = ml_collections.ConfigDict(dict(num_listeners=2000, min_length=2))
  study = session_study.get_config("library=demo")
  config.world = ml_collections.ConfigDict(dict(
      seed=config.get_ref("seed"), library=study.library, sim=study.sim, calibrate=True,
      early_skip_rate=study.early_skip_rate, skip_before_end_rate=study.skip_before_end_rate))
  # k-means prototypes work for any index (attribute combinations need the
  # demo corpus's attributes).
  config.world.library.prototypes = "kmeans"
  config.world.library.attribute_names = ()
  config.world.sim.history_sessions = 4

  if runlocal:
    config.item2vec.dim = 16
    config.item2vec.epochs = 2
    config.item2vec.steps_per_call = 8
    config.mf.factors = 8
    config.mf.iterations = 3
    config.simulation.num_listeners = 32
    config.world.calibrate = False
    config.world.library.num_prototypes = 3
    config.world.sim.num_events = 8
    config.world.sim.playlist_length = 10
    config.world.sim.bag_size = 3
    config.world.sim.active_per_session = 2
    config.world.sim.history_sessions = 2
  return config
