r"""Highlight rules on constructed tracks: the rise-term sweep and the rule comparison.

  python -m bench.highlights                                # sweep, then first-S vs energy
  python -m bench.highlights --workdir=workdirs/highlights  # also the attention rule

Tracks come from `jplaylist/mixing/constructed.py` (a quiet solo with the
full ensemble entering for a known stretch, and a short louder swell
elsewhere as a distractor). Two parts:

1. Sweep (the defaults of `highlights.window_scores`): mean IoU and hit rate
   (IoU >= 0.5) of the energy rule on --num_tracks tracks of --seed, for
   every rise weight in --rate_weights and reach in --rate_seconds, with
   the true highlight as long as S and twice as long (where the rise term
   matters: the loud section is a plateau longer than the window). The
   frame energy is computed once per set; only the scoring is repeated.
2. Comparison on held-out tracks (--seed + 1), with the true highlight as
   long as S and twice as long: first-S against the energy rule at the
   defaults, and with --workdir the attention rule of a trained classifier
   (`configs/highlights.py`); its windows' curves are laid end to end.

Prints figures only; the timing line is for planning a run, not a result.
"""

import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from jplaylist.mixing import constructed
from jplaylist.mixing import highlights

_NUM_TRACKS = flags.DEFINE_integer("num_tracks", 100, "Constructed tracks per set.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sweep's tracks; held-out: seed + 1.")
_TRACK_SECONDS = flags.DEFINE_float("track_seconds", 40.0, "Length of each track.")
_SECONDS = flags.DEFINE_float("seconds", 10.0, "S, the highlight length predicted.")
_RATE_WEIGHTS = flags.DEFINE_list("rate_weights", ["0", "0.05", "0.1", "0.2", "0.3", "0.5"],
                                  "Rise weights swept.")
_RATE_SECONDS = flags.DEFINE_list("rate_seconds", ["0.5", "1", "2"], "Rise reaches swept.")
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "A trained highlight classifier (configs/highlights.py): "
                               "adds the attention rule to the comparison.")


def _sweep(tracks, seconds):
  """{(weight, reach): (mean IoU, hit rate)} of the energy rule."""
  energy, frame_seconds = highlights.frame_energy(np.stack([t.audio for t in tracks]),
                                                  tracks[0].sample_rate)
  truth = np.array([t.highlight for t in tracks])
  window = int(round(seconds / frame_seconds))
  results = {}
  for weight in map(float, _RATE_WEIGHTS.value):
    for reach in map(float, _RATE_SECONDS.value):
      starts = highlights.highlight_starts(
          energy, window, rate_weight=weight,
          rate_frames=int(round(reach / frame_seconds))) * frame_seconds
      iou, _ = highlights.interval_overlap(starts, starts + seconds, truth[:, 0], truth[:, 1])
      results[weight, reach] = (float(iou.mean()), float(np.mean(iou >= 0.5)))
  return results


def _attention_fn(workdir):
  """(audio [B, samples], rate) -> [B, T'] attention of a trained classifier over each track.

  The classifier sees windows of its own length; each window's curve sums to
  1 over its valid frames, so it is scaled to mean 1 there before the
  windows are laid end to end (a flat attention stays flat).
  """
  import soxr  # pylint: disable=g-import-not-at-top
  from jplaylist.trainers import classifier  # pylint: disable=g-import-not-at-top
  model, params, _ = classifier.restore(workdir)
  model_rate = model.frontend.sample_rate
  window = model.frontend.window_samples

  def attention_fn(audio, sample_rate):
    if sample_rate != model_rate:
      audio = np.stack([soxr.resample(row, sample_rate, model_rate) for row in audio])
    num_samples = audio.shape[1]
    count = -(-num_samples // window)
    rows = np.pad(audio, ((0, 0), (0, count * window - num_samples)))
    rows = rows.reshape(len(audio) * count, window).astype(np.float32)
    lengths = np.tile(np.clip(num_samples - window * np.arange(count), 0, window), len(audio))
    curves = np.concatenate([classifier.attention(model, params, rows[k:k + 16],
                                                  lengths[k:k + 16])[1]
                             for k in range(0, len(rows), 16)])
    frames = curves.shape[1]
    valid = np.maximum(1, np.round(lengths / window * frames))
    curves = curves * valid[:, None]
    kept = int(round(num_samples / window * frames))   # the frames over the track itself
    return curves.reshape(len(audio), count * frames)[:, :kept]

  return attention_fn


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # checkpoint restore logs are not figures
  began = time.time()
  seconds = _SECONDS.value
  reaches = [float(r) for r in _RATE_SECONDS.value]
  for length in (seconds, 2 * seconds):
    print(f"Sweep: {_NUM_TRACKS.value} constructed tracks of {_TRACK_SECONDS.value:g} s, "
          f"seed {_SEED.value}, true highlight {length:g} s, S = {seconds:g} s; energy rule, "
          f"mean IoU / hit rate", flush=True)
    tracks = constructed.make_tracks(_NUM_TRACKS.value, seed=_SEED.value,
                                     seconds=_TRACK_SECONDS.value, highlight_seconds=length)
    sweep = _sweep(tracks, seconds)
    print("rise weight | " + " | ".join(f"reach {r:g} s" for r in reaches))
    for weight in map(float, _RATE_WEIGHTS.value):
      print(f"{weight:11g} | " + " | ".join(
          f"{sweep[weight, r][0]:.3f} / {sweep[weight, r][1]:.2f}" for r in reaches))
    best = max(sweep, key=lambda k: sweep[k])
    print(f"best: weight {best[0]:g}, reach {best[1]:g} s ({sweep[best][0]:.3f} / "
          f"{sweep[best][1]:.2f})\n", flush=True)

  attention_fn = _attention_fn(_WORKDIR.value) if _WORKDIR.value else None
  print(f"Held out: {_NUM_TRACKS.value} tracks of seed {_SEED.value + 1}, defaults "
        f"(rise weight 0.1, reach 2 s), S = {seconds:g} s: IoU / coverage / hit rate")
  for length in (seconds, 2 * seconds):
    held_out = constructed.make_tracks(_NUM_TRACKS.value, seed=_SEED.value + 1,
                                       seconds=_TRACK_SECONDS.value, highlight_seconds=length)
    results = constructed.evaluate(held_out, seconds, attention_fn=attention_fn)
    print(f"true highlight {length:g} s: " + "; ".join(
        f"{rule} {r['iou']:.3f} / {r['coverage']:.3f} / {r['hit_rate']:.2f}"
        for rule, r in results.items()), flush=True)
  print(f"({time.time() - began:.0f} s)")


if __name__ == "__main__":
  app.run(main)
