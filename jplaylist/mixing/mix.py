"""A DJ mix: highlights cut at beats, ordered for smooth transitions, crossfaded.

Issue 15 item 5. For a set of tracks:

1. Each track's tempo and key come from its library attributes, else from
   its audio (librosa's beat tracker; `transitions.estimate_key`); its beats
   always come from the beat tracker. A tempo neither gives (the tracker
   says 0 BPM on silence) is unknown: reported as null, costed as one
   tempo tolerance.
2. The order minimises the summed transition cost (`transitions.cost_terms`)
   with greedy nearest neighbour + 2-opt (`ordering.optimise_order`).
3. Each track plays its highlight of about S seconds (`highlights`, the
   energy rule unless an attention curve is given). A clip starts on the
   beat nearest the highlight start, and the next track enters on the beat
   nearest S - crossfade seconds later, so both cut points are beats: the
   outgoing track's beat and the incoming track's first beat coincide at
   the start of every crossfade. Where the tracker found no beat in the
   allowed range (silence, a track without a pulse) the cut falls at the
   plain time instead, off the beat (`_nearest_beat`). (Beats stay aligned through the crossfade
   only where the tempi match; nothing is time-stretched.)
4. Each clip is brought to one RMS level (a DJ's gain trim, at most
   MAX_TRIM_DB up), then the clips
   overlap by the crossfade with equal-power gains, sin and cos of a quarter
   period, so the summed power of two uncorrelated tracks stays constant.

`make_mix` returns the audio, the order, the cut points and a report that
sets the optimised order's total cost against the given order and against
random orders; `write_mix` writes mix.flac, transitions.png and report.json.
"""

from __future__ import annotations

import dataclasses
import json
import os

from absl import logging
import numpy as np
import soundfile
import soxr

from jplaylist import library_index
from jplaylist.mixing import highlights
from jplaylist.mixing import ordering
from jplaylist.mixing import transitions

TARGET_RMS_DB = -20.0  # clip level before mixing, dB full scale
MAX_TRIM_DB = 40.0  # a near-silent clip is not lifted to TARGET_RMS_DB (its noise would be)
PEAK_LIMIT = 0.99


@dataclasses.dataclass
class Track:
  """One track of a mix.

  Attributes:
    id: its library id.
    audio: [num_samples] float32 mono waveform.
    sample_rate: Hz.
    embedding: [d] audio embedding.
    tempo_bpm: known tempo, or None (estimated from the audio).
    key: known key, or None (estimated from the audio).
    attention: optional [T'] attention over the track's duration (a highlight
      model's); with it the highlight uses the attention rule.
  """
  id: str
  audio: np.ndarray
  sample_rate: int
  embedding: np.ndarray
  tempo_bpm: float | None = None
  key: transitions.Key | None = None
  attention: np.ndarray | None = None

  @property
  def duration(self) -> float:
    return len(self.audio) / self.sample_rate


@dataclasses.dataclass(frozen=True)
class Clip:
  """Where one track is cut, in seconds of the track.

  Attributes:
    highlight: the highlight start that the cut follows.
    cut_in: first sample played, a beat if one is in range (the incoming
      crossfade starts here).
    fade_start: where the next track enters, a beat if one is in range.
    cut_out: fade_start + crossfade, the last sample played.
  """
  highlight: float
  cut_in: float
  fade_start: float
  cut_out: float


def track_beats(audio: np.ndarray, sample_rate: int) -> tuple[float, np.ndarray]:
  """(tempo in BPM, [num_beats] beat times in seconds) by librosa's beat tracker."""
  import librosa  # pylint: disable=g-import-not-at-top  (slow import, only needed here)
  tempo, beats = librosa.beat.beat_track(y=np.asarray(audio, np.float32), sr=sample_rate,
                                         units="time")
  return float(np.atleast_1d(tempo)[0]), np.asarray(beats, np.float64)


def _nearest_beat(beats: np.ndarray, target: float, low: float, high: float) -> float:
  """The beat nearest `target` within [low, high]; if none, `target` clipped there.

  The fallback is not a beat: the cut is then off the beat.
  """
  inside = beats[(beats >= low) & (beats <= high)]
  if len(inside) == 0:
    return float(np.clip(target, low, high))
  return float(inside[np.argmin(np.abs(inside - target))])


def plan_clip(duration: float, beats: np.ndarray, highlight: float, seconds: float,
              crossfade: float) -> Clip:
  """Beat-aligned cut points of a clip of about `seconds` from `highlight` on.

  Args:
    duration: the track's length, seconds; at least 2 * crossfade.
    beats: beat times, seconds.
    highlight: highlight start, seconds.
    seconds: the clip's length, crossfades included.
    crossfade: the crossfade's length, seconds.
  """
  if duration < 2 * crossfade:
    raise ValueError(f"a {duration:.2f}-s track cannot hold two {crossfade}-s crossfades")
  cut_in = _nearest_beat(beats, highlight, 0.0, duration - 2 * crossfade)
  fade_start = _nearest_beat(beats, cut_in + max(seconds, 2 * crossfade) - crossfade,
                             cut_in + crossfade, duration - crossfade)
  return Clip(highlight=float(highlight), cut_in=cut_in, fade_start=fade_start,
              cut_out=fade_start + crossfade)


def equal_power_fades(num_samples: int) -> tuple[np.ndarray, np.ndarray]:
  """(fade_in, fade_out) gains of a crossfade: sin and cos of a quarter period.

  fade_in**2 + fade_out**2 == 1 at every sample.
  """
  phase = 0.5 * np.pi * (np.arange(num_samples) + 0.5) / max(num_samples, 1)
  return np.sin(phase).astype(np.float32), np.cos(phase).astype(np.float32)


def render(segments: list[np.ndarray], advances: list[int], crossfade_samples: int
           ) -> tuple[np.ndarray, list[int]]:
  """Overlaps segments by `crossfade_samples` with equal-power fades.

  Args:
    segments: waveforms, each at least 2 * crossfade_samples long; segment k
      fades in over its first crossfade_samples (k > 0) and out over its
      last (k < last).
    advances: samples from one segment's start to the next's start, one per
      segment but the last (len(segment) - crossfade_samples when the
      segments are cut as `plan_clip` does).
    crossfade_samples: the overlap.

  Returns:
    (mix [samples] float32, start sample of each segment).
  """
  fade_in, fade_out = equal_power_fades(crossfade_samples)
  starts = np.concatenate([[0], np.cumsum(advances)]).astype(int)
  total = int(max(start + len(s) for start, s in zip(starts, segments)))
  out = np.zeros(total, np.float32)
  for k, (start, segment) in enumerate(zip(starts, segments)):
    segment = np.array(segment, np.float32)
    if crossfade_samples and k > 0:
      segment[:crossfade_samples] *= fade_in
    if crossfade_samples and k < len(segments) - 1:
      segment[-crossfade_samples:] *= fade_out
    out[start:start + len(segment)] += segment
  return out, [int(s) for s in starts]


@dataclasses.dataclass
class MixResult:
  """What `make_mix` made; `report` is JSON-ready."""
  audio: np.ndarray
  sample_rate: int
  order: list[int]
  clips: list[Clip]
  terms: dict[str, np.ndarray]
  report: dict


def _describe(tracks: list[Track]):
  """Tempo, key, beats of every track, and where each came from."""
  described = []
  for track in tracks:
    beat_tempo, beats = track_beats(track.audio, track.sample_rate)
    key = track.key or transitions.estimate_key(track.audio, track.sample_rate)
    if track.tempo_bpm and np.isfinite(track.tempo_bpm) and track.tempo_bpm > 0:
      tempo, tempo_source = float(track.tempo_bpm), "index"
    elif np.isfinite(beat_tempo) and beat_tempo > 0:
      tempo, tempo_source = beat_tempo, "beat tracker"
    else:  # silence: librosa says 0 BPM; the cost takes it as unknown
      tempo, tempo_source = None, "unknown"
    described.append(dict(
        tempo_bpm=tempo, tempo_source=tempo_source,
        beat_tracker_bpm=beat_tempo, beats=beats, key=key,
        key_source="index" if track.key else "chroma"))
  return described


def check_settings(*, seconds: float, crossfade: float, rule: str, num_random: int) -> None:
  """Raises a ValueError naming the first bad setting of `make_mix`."""
  if not seconds > 0:
    raise ValueError(f"seconds={seconds}: a clip must be longer than 0 s")
  if not 0 <= crossfade < seconds:
    raise ValueError(f"crossfade={crossfade} must be >= 0 and shorter than "
                     f"seconds={seconds}")
  if rule not in highlights.RULES:
    raise ValueError(f"rule={rule!r}; known: {', '.join(highlights.RULES)}")
  if num_random < 1:
    raise ValueError(f"num_random={num_random}: the random baseline needs at least 1 order")


def make_mix(tracks: list[Track], *, seconds: float = 20.0, crossfade: float = 4.0,
             rule: str = "energy", weights: transitions.CostWeights = transitions.CostWeights(),
             sample_rate: int | None = None, num_random: int = 1000, seed: int = 0,
             progress=None) -> MixResult:
  """Orders, cuts and crossfades `tracks` into one mix.

  Args:
    tracks: the set, in its given (original) order; each at least
      2 * crossfade seconds long.
    seconds: S, each clip's length including its crossfades.
    crossfade: seconds of each crossfade.
    rule: highlight rule, "energy" or "first"; tracks with an attention
      curve use "attention" unless the rule is "first".
    weights: the transition cost's weights.
    sample_rate: Hz of the mix (default: the first track's).
    num_random: random orders drawn for the baseline.
    seed: seeds the random orders.
    progress: optional callable(str) told about each stage.

  Returns:
    A MixResult.

  Raises:
    ValueError: fewer than 2 tracks, seconds <= 0, a crossfade not in
      [0, seconds), an unknown rule, or num_random < 1.
  """
  check_settings(seconds=seconds, crossfade=crossfade, rule=rule, num_random=num_random)
  if len(tracks) < 2:
    raise ValueError(f"a mix needs at least 2 tracks, got {len(tracks)}")
  say = progress or (lambda message: None)
  sample_rate = int(sample_rate or tracks[0].sample_rate)
  say(f"tempo, key and beats of {len(tracks)} tracks")
  described = _describe(tracks)
  terms = transitions.cost_terms(np.array([np.nan if d["tempo_bpm"] is None
                                           else d["tempo_bpm"] for d in described]),
                                 [d["key"] for d in described],
                                 np.stack([t.embedding for t in tracks]), weights)
  order = ordering.optimise_order(terms["total"])
  say("highlights and beat-aligned cuts")
  clips, segments = [], []
  for track, about in zip(tracks, described):
    track_rule = ("attention" if track.attention is not None and rule != "first" else rule)
    attention = None if track.attention is None else np.asarray(track.attention)[None]
    start = float(highlights.find_highlights(track.audio, track.sample_rate, seconds,
                                             rule=track_rule, attention=attention))
    clip = plan_clip(track.duration, about["beats"], start, seconds, crossfade)
    clips.append(clip)
    audio = track.audio
    if track.sample_rate != sample_rate:
      audio = soxr.resample(audio, track.sample_rate, sample_rate)
    segment = audio[int(round(clip.cut_in * sample_rate)):
                    int(round(clip.fade_start * sample_rate)) + int(round(crossfade
                                                                          * sample_rate))]
    rms = np.sqrt(np.mean(np.square(segment, dtype=np.float64))) + 1e-12
    trim = min(10 ** (TARGET_RMS_DB / 20) / rms, 10 ** (MAX_TRIM_DB / 20))
    segments.append((segment * trim).astype(np.float32))
  say("crossfading")
  crossfade_samples = int(round(crossfade * sample_rate))
  advances = [len(segments[k]) - crossfade_samples for k in order[:-1]]
  audio, starts = render([segments[k] for k in order], advances, crossfade_samples)
  peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
  gain = min(1.0, PEAK_LIMIT / peak) if peak > 0 else 1.0
  audio = audio * gain
  rng = np.random.default_rng(seed)
  random_costs = ordering.random_order_costs(terms["total"], num_random, rng)
  original = list(range(len(tracks)))
  report = {
      "num_tracks": len(tracks), "seconds": seconds, "crossfade": crossfade, "rule": rule,
      "weights": dataclasses.asdict(weights), "sample_rate": sample_rate,
      "mix_seconds": len(audio) / sample_rate, "limiter_gain": gain,
      "total_cost": {
          "optimised": ordering.path_cost(terms["total"], order),
          "original": ordering.path_cost(terms["total"], original),
          "random_mean": float(random_costs.mean()),
          "random_std": float(random_costs.std()),
          "random_min": float(random_costs.min()), "num_random": num_random,
          "optimised_below_random_fraction": float(np.mean(
              random_costs > ordering.path_cost(terms["total"], order) + 1e-9)),
      },
      # How far each weighted term spreads over all pairs: whether one drowns the others.
      "term_percentiles": {
          name: dict(zip(("p5", "median", "p95", "max"), (float(v) for v in np.percentile(
              terms[name][~np.eye(len(tracks), dtype=bool)], [5, 50, 95, 100]))))
          for name in ("tempo", "key", "embedding")},
      "order": [tracks[k].id for k in order],
      "tracks": [dict(id=t.id, tempo_bpm=d["tempo_bpm"], tempo_source=d["tempo_source"],
                      beat_tracker_bpm=d["beat_tracker_bpm"], key=str(d["key"]),
                      key_source=d["key_source"], duration=t.duration,
                      highlight=c.highlight, cut_in=c.cut_in, fade_start=c.fade_start,
                      cut_out=c.cut_out)
                 for t, d, c in zip(tracks, described, clips)],
      "transitions": [dict(source=tracks[a].id, target=tracks[b].id,
                           mix_time=starts[position + 1] / sample_rate,
                           **{name: float(value[a, b]) for name, value in terms.items()})
                      for position, (a, b) in enumerate(zip(order[:-1], order[1:]))],
  }
  return MixResult(audio=audio, sample_rate=sample_rate, order=order, clips=clips,
                   terms=terms, report=report)


def write_mix(result: MixResult, output_dir: str, audio_format: str = "flac") -> dict:
  """Writes mix.<format>, transitions.png and report.json; returns their paths."""
  from jplaylist.mixing import plots  # pylint: disable=g-import-not-at-top  (matplotlib)
  os.makedirs(output_dir, exist_ok=True)
  paths = {"audio": os.path.join(output_dir, f"mix.{audio_format}"),
           "plot": os.path.join(output_dir, "transitions.png"),
           "report": os.path.join(output_dir, "report.json")}
  soundfile.write(paths["audio"], result.audio, result.sample_rate)
  plots.plot_transitions(result.report, paths["plot"])
  with open(paths["report"], "w") as f:
    json.dump(result.report, f, indent=1)
  return paths


def run(index_path: str, output_dir: str, *, dataset: str | None = None,
        audio_dir: str | None = None, num_tracks: int = 12, ids: list[str] | None = None,
        seed: int = 0, seconds: float = 20.0, crossfade: float = 4.0, rule: str = "energy",
        weights: transitions.CostWeights = transitions.CostWeights(),
        num_random: int = 1000, progress=None) -> tuple[MixResult, dict]:
  """A mix of tracks of a library index, written to `output_dir` (launch/dj_mix.py).

  Selects the tracks (`sources.select`), reads their audio and attributes
  (`sources.tracks_of`), mixes them (`make_mix`) and writes the mix
  (`write_mix`). Tracks that cannot be read, or are shorter than two
  crossfades, are skipped, logged, and listed in report["skipped"].

  Args:
    index_path: a library index .npz (`launch.embed`).
    output_dir: where mix.flac, transitions.png and report.json go.
    dataset, audio_dir: where the index's audio is (exactly one).
    num_tracks, ids, seed: which tracks (`sources.select`); seed also seeds
      the random-order baseline.
    seconds, crossfade, rule, weights, num_random: as in `make_mix`.
    progress: optional callable(str) told about each stage.

  Returns:
    (the MixResult, {"audio", "plot", "report"}: paths written).

  Raises:
    ValueError: a bad setting (named), or fewer than 2 readable tracks.
  """
  # sources builds this module's Tracks, so it is imported here, not on top.
  from jplaylist.mixing import sources  # pylint: disable=g-import-not-at-top
  if bool(dataset) == bool(audio_dir):
    raise ValueError(f"give exactly one of dataset and audio_dir, got dataset={dataset!r}, "
                     f"audio_dir={audio_dir!r}")
  # Bad settings fail before the slow reading.
  check_settings(seconds=seconds, crossfade=crossfade, rule=rule, num_random=num_random)
  say = progress or (lambda message: None)
  index = library_index.load(index_path)
  positions = sources.select(index, num_tracks, seed, ids)
  say(f"reading {len(positions)} tracks of {index_path}")
  tracks, skipped = sources.tracks_of(index, positions, dataset=dataset, audio_dir=audio_dir,
                                      min_seconds=2 * crossfade)
  for track_id, reason in skipped:
    logging.warning("skipped %s: %s", track_id, reason)
  if len(tracks) < 2:
    raise ValueError(f"{len(tracks)} of {len(positions)} tracks could be read, a mix needs "
                     f"2; skipped: {'; '.join(f'{i}: {r}' for i, r in skipped[:5])}")
  result = make_mix(tracks, seconds=seconds, crossfade=crossfade, rule=rule, weights=weights,
                    num_random=num_random, seed=seed, progress=progress)
  result.report["index"] = index_path
  result.report["skipped"] = [{"id": i, "reason": r} for i, r in skipped]
  return result, write_mix(result, output_dir)
