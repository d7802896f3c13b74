r"""Writes a DJ mix of tracks from a library index (issue 15, item 5).

  python -m launch.dj_mix --index=workdirs/demo/library.npz \
      --dataset=data/music_text/demo/1.0.0 --num_tracks=12 --output=workdirs/demo/dj_mix
  python -m launch.dj_mix --index=/tmp/my_library.npz --audio_dir=/path/to/music \
      --num_tracks=8 --seconds=30 --crossfade=6 --output=/tmp/my_mix

Draws --num_tracks tracks of the index (or takes --ids), reads their audio
from the dataset or folder the index was embedded from, orders them for
smooth transitions, cuts each one's highlight at beats, crossfades, and
writes mix.flac, transitions.png and report.json (total transition cost of
the optimised, original and random orders) to --output. Tempo and key come
from the index attributes where present, else from the audio. The work is
`jplaylist.mixing.mix.run`; this file is intentionally kept short.
"""

from absl import app
from absl import flags
import jax

from jplaylist.mixing import mix
from jplaylist.mixing import transitions

_INDEX = flags.DEFINE_string("index", None, "Library index .npz (launch.embed).")
_DATASET = flags.DEFINE_string("dataset", None, "Built dataset folder the index came from.")
_AUDIO_DIR = flags.DEFINE_string("audio_dir", None, "A folder of audio files instead.")
_NUM_TRACKS = flags.DEFINE_integer("num_tracks", 12, "Tracks drawn at random from the index.")
_IDS = flags.DEFINE_list("ids", None, "Explicit track ids instead of a random draw.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the draw and the random-order baseline.")
_SECONDS = flags.DEFINE_float("seconds", 20.0, "Clip length per track (its highlight).")
_CROSSFADE = flags.DEFINE_float("crossfade", 4.0, "Crossfade length, seconds.")
_RULE = flags.DEFINE_enum("rule", "energy", ["energy", "first"], "Highlight rule.")
_TEMPO_WEIGHT = flags.DEFINE_float("tempo_weight", 1.0, "Cost per 8% tempo mismatch.")
_KEY_WEIGHT = flags.DEFINE_float("key_weight", 0.5, "Cost per Camelot-wheel step.")
_EMBEDDING_WEIGHT = flags.DEFINE_float("embedding_weight", 2.0, "Cost per cosine distance.")
_OUTPUT = flags.DEFINE_string("output", None, "Output folder.")
flags.mark_flags_as_required(["index", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if bool(_DATASET.value) == bool(_AUDIO_DIR.value):
    raise app.UsageError("give exactly one of --dataset and --audio_dir")
  # The library copies host waveforms to the device explicitly; any other
  # copy is a bug and should fail.
  jax.config.update("jax_transfer_guard", "disallow")
  weights = transitions.CostWeights(tempo=_TEMPO_WEIGHT.value, key=_KEY_WEIGHT.value,
                                    embedding=_EMBEDDING_WEIGHT.value)
  result, paths = mix.run(
      _INDEX.value, _OUTPUT.value, dataset=_DATASET.value, audio_dir=_AUDIO_DIR.value,
      num_tracks=_NUM_TRACKS.value, ids=_IDS.value, seed=_SEED.value, seconds=_SECONDS.value,
      crossfade=_CROSSFADE.value, rule=_RULE.value, weights=weights,
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
