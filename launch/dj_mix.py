r"""Writes a DJ mix of tracks from a library index (issue 15, item 5).

  python -m launch.dj_mix --config=configs/dj_mix.py --index=workdirs/demo/library.npz \
      --dataset=data/music_text/demo/1.0.0 --output=workdirs/demo/dj_mix
  python -m launch.dj_mix --config=configs/dj_mix.py --index=/tmp/my_library.npz \
      --audio_dir=/path/to/music --config.num_tracks=8 --config.seconds=30 --output=/tmp/my_mix

Draws `config.num_tracks` tracks of the index (or takes --ids), reads their
audio from the dataset or folder the index was embedded from, orders them
for smooth transitions, cuts each one's highlight at beats, crossfades, and
writes mix.flac, transitions.png and report.json (total transition cost of
the optimised, original and random orders) to --output. Tempo and key come
from the index attributes where present, else from the audio. Settings:
configs/dj_mix.py. The work is `jplaylist.mixing.mix.run`; this file is
intentionally kept short.
"""

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from jplaylist.mixing import mix
from jplaylist.mixing import transitions

_CONFIG = config_flags.DEFINE_config_file("config", None, "DJ mix config file.",
                                          lock_config=True)
_INDEX = flags.DEFINE_string("index", None, "Library index .npz (launch.embed).")
_DATASET = flags.DEFINE_string("dataset", None, "Built dataset folder the index came from.")
_AUDIO_DIR = flags.DEFINE_string("audio_dir", None, "A folder of audio files instead.")
_IDS = flags.DEFINE_list("ids", None, "Explicit track ids instead of a random draw.")
_OUTPUT = flags.DEFINE_string("output", None, "Output folder.")
flags.mark_flags_as_required(["config", "index", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if bool(_DATASET.value) == bool(_AUDIO_DIR.value):
    raise app.UsageError("give exactly one of --dataset and --audio_dir")
  # The library copies host waveforms to the device explicitly; any other
  # copy is a bug and should fail.
  jax.config.update("jax_transfer_guard", "disallow")
  config = _CONFIG.value
  weights = transitions.CostWeights(**config.weights)
  result, paths = mix.run(
      _INDEX.value, _OUTPUT.value, dataset=_DATASET.value, audio_dir=_AUDIO_DIR.value,
      num_tracks=config.num_tracks, ids=_IDS.value, seed=config.seed,
      seconds=config.seconds, crossfade=config.crossfade, rule=config.rule, weights=weights,
      num_random=config.num_random,
      progress=lambda stage: print(f"  {stage} ...", flush=True))
  report, cost = result.report, result.report["total_cost"]
  print(f"Mixed {report['num_tracks']} tracks ({len(report['skipped'])} skipped) into "
        f"{report['mix_seconds']:.1f} s: {paths['audio']}")
  print(f"Total transition cost: optimised {cost['optimised']:.2f}, original order "
        f"{cost['original']:.2f}, random orders {cost['random_mean']:.2f} "
        f"+- {cost['random_std']:.2f} (min {cost['random_min']:.2f}, "
        f"n={cost['num_random']})")
  print("Weighted cost terms over all pairs, median [5th-95th percentile]: " + ", ".join(
      f"{name} {p['median']:.2f} [{p['p5']:.2f}-{p['p95']:.2f}]"
      for name, p in report["term_percentiles"].items()))
  print(f"Wrote {paths['plot']} and {paths['report']}")


if __name__ == "__main__":
  app.run(main)
