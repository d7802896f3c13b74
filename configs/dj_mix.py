r"""A DJ mix of library tracks: which tracks, how long each plays, what a smooth transition is.

  python -m launch.dj_mix --config=configs/dj_mix.py --index=workdirs/demo/library.npz \
      --dataset=data/music_text/demo/1.0.0 --output=workdirs/demo/dj_mix
  python -m launch.dj_mix --config=configs/dj_mix.py --index=/tmp/my_library.npz \
      --audio_dir=/path/to/music --config.num_tracks=8 --config.seconds=30 \
      --config.crossfade=6 --output=/tmp/my_mix

Issue 15, item 5 (jplaylist/mixing/mix.py). The cost weights are those of
`transitions.CostWeights`: one unit of cost is a full pitch-fader tempo
mismatch, two Camelot steps, or a cosine distance of 0.5
(jplaylist/mixing/transitions.py says why).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None):
  common.parse_arg(arg)
  config = ml_collections.ConfigDict()
  config.num_tracks = 12        # drawn at random from the index (unless --ids)
  config.seed = 0               # the draw and the random-order baseline
  config.seconds = 20.0         # clip length per track: its highlight
  config.crossfade = 4.0        # equal-power crossfade, seconds
  config.rule = "energy"        # highlight rule: energy | first
  config.num_random = 1000      # random orders the optimised one is compared with
  config.weights = ml_collections.ConfigDict(dict(
      tempo=1.0,                # per tempo_tolerance of tempo mismatch
      key=0.5,                  # per Camelot-wheel step
      embedding=2.0,            # per unit of cosine distance
      tempo_tolerance=0.08))    # a turntable pitch fader's +-8 %
  return config
