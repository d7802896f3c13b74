"""Beat-aligned cuts, equal-power crossfades, and a whole mix on synthetic tracks."""

import contextlib
import json
import signal

import numpy as np
import pytest
import soundfile

from jplaylist.mixing import mix
from jplaylist.mixing import transitions

RATE = 16_000


def _beat_track(bpm, seconds, pitch=60, rate=RATE, seed=0):
  """Clicks on every beat over a quiet harmonic drone: a tempo the tracker can find."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * rate)) / rate
  audio = 0.05 * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t)
  click = rng.standard_normal(int(0.03 * rate)) * np.exp(-np.arange(int(0.03 * rate)) / 80)
  for beat in np.arange(0.25, seconds - 0.05, 60.0 / bpm):
    start = int(beat * rate)
    audio[start:start + len(click)] += 0.6 * click[:len(audio) - start]
  return audio.astype(np.float32)


def test_equal_power_fades_keep_power_constant():
  fade_in, fade_out = mix.equal_power_fades(1000)
  np.testing.assert_allclose(fade_in ** 2 + fade_out ** 2, 1.0, rtol=1e-6)
  assert np.all(np.diff(fade_in) > 0) and np.all(np.diff(fade_out) < 0)
  assert fade_in[0] < 0.01 and fade_out[-1] < 0.01


def test_render_overlaps_segments_by_the_crossfade():
  first, second, third = np.ones(10), 2 * np.ones(8), 3 * np.ones(6)
  audio, starts = mix.render([first, second, third], [7, 5], 3)
  fade_in, fade_out = mix.equal_power_fades(3)
  expected = np.zeros(18)
  expected[0:10] += np.concatenate([np.ones(7), fade_out])
  expected[7:15] += 2 * np.concatenate([fade_in, np.ones(2), fade_out])
  expected[12:18] += 3 * np.concatenate([fade_in, np.ones(3)])
  assert starts == [0, 7, 12]
  np.testing.assert_allclose(audio, expected, rtol=1e-6)


def test_plan_clip_cuts_on_beats_within_the_track():
  beats = np.arange(0.3, 30, 0.5)
  clip = mix.plan_clip(30.0, beats, highlight=10.1, seconds=8.0, crossfade=2.0)
  assert clip.cut_in == pytest.approx(10.3) and clip.fade_start == pytest.approx(16.3)
  assert clip.cut_out == pytest.approx(18.3)
  late = mix.plan_clip(30.0, beats, highlight=27.0, seconds=8.0, crossfade=2.0)
  assert late.cut_in in beats and late.fade_start in beats and late.cut_out <= 30.0
  assert late.fade_start - late.cut_in >= 2.0
  with pytest.raises(ValueError, match="cannot hold"):
    mix.plan_clip(3.0, beats, 0.0, 8.0, 2.0)


def test_track_beats_finds_the_tempo_of_a_click_track():
  tempo, beats = mix.track_beats(_beat_track(120, 12), RATE)
  assert abs(tempo - 120) < 3
  assert np.median(np.diff(beats)) == pytest.approx(0.5, abs=0.03)


def test_make_mix_orders_cuts_and_writes_a_readable_mix(tmp_path):
  rng = np.random.default_rng(0)
  bpms = [90, 126, 92, 124, 91]
  keys = ["C major", "F# major", "G major", "C# major", None]
  tracks = [mix.Track(id=f"t{k}", audio=_beat_track(bpm, 12, pitch=60 + k, seed=k),
                      sample_rate=RATE, embedding=rng.standard_normal(4),
                      tempo_bpm=None if k == 3 else bpm, key=transitions.parse_key(key))
            for k, (bpm, key) in enumerate(zip(bpms, keys))]
  result = mix.make_mix(tracks, seconds=6.0, crossfade=1.5, num_random=200,
                        weights=transitions.CostWeights(embedding=0.0))
  report = result.report
  assert sorted(result.order) == list(range(5)) and len(report["transitions"]) == 4
  cost = report["total_cost"]
  assert cost["optimised"] <= cost["original"] and cost["optimised"] < cost["random_mean"]
  # The slow tracks stay together, as do the fast ones.
  slow = [bpms[k] < 100 for k in result.order]
  assert sum(a != b for a, b in zip(slow[:-1], slow[1:])) == 1
  about = {t["id"]: t for t in report["tracks"]}
  assert about["t3"]["tempo_source"] == "beat tracker" and about["t0"]["tempo_source"] == "index"
  # A drone on E (pitch 64) has E as tonic; its mode is anyone's guess.
  assert about["t4"]["key_source"] == "chroma" and about["t4"]["key"].startswith("E ")
  # Clip lengths add up to the mix, less one crossfade per transition.
  played = sum(c.cut_out - c.cut_in for c in result.clips)
  assert report["mix_seconds"] == pytest.approx(played - 4 * 1.5, abs=0.01)
  paths = mix.write_mix(result, str(tmp_path))
  audio, rate = soundfile.read(paths["audio"])
  assert rate == RATE and len(audio) == len(result.audio)
  assert np.max(np.abs(audio)) <= mix.PEAK_LIMIT + 1e-3 and np.max(np.abs(audio)) > 0.01
  with open(paths["report"]) as f:
    assert json.load(f)["order"] == report["order"]
  assert open(paths["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@contextlib.contextmanager
def _deadline(seconds):
  """Turns a hang (2-opt looping on NaN gains) into a failure."""
  def fail(signum, frame):
    raise TimeoutError(f"still running after {seconds} s")
  previous = signal.signal(signal.SIGALRM, fail)
  signal.alarm(seconds)
  try:
    yield
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_silent_track_mixes_with_an_unknown_tempo(tmp_path):
  # librosa's beat tracker says 0 BPM for silence; log2(0) once made an
  # infinite cost, NaN gains, and a 2-opt that never stopped.
  assert mix.track_beats(np.zeros(6 * RATE, np.float32), RATE)[0] == 0.0
  rng = np.random.default_rng(1)
  audio = [_beat_track(100, 10, seed=0), np.zeros(10 * RATE, np.float32),
           _beat_track(104, 10, seed=1), _beat_track(140, 10, seed=2)]
  tracks = [mix.Track(id=f"t{k}", audio=a, sample_rate=RATE, embedding=rng.standard_normal(4))
            for k, a in enumerate(audio)]
  with _deadline(300):
    result = mix.make_mix(tracks, seconds=5.0, crossfade=1.0, num_random=50)
    paths = mix.write_mix(result, str(tmp_path))
  about = {t["id"]: t for t in result.report["tracks"]}
  assert about["t1"]["tempo_source"] == "unknown" and about["t1"]["tempo_bpm"] is None
  assert about["t0"]["tempo_source"] == "beat tracker" and about["t0"]["tempo_bpm"] > 0
  assert np.isfinite(result.terms["total"]).all()
  # An unknown tempo costs one tolerance (tempo weight 1) to every other track.
  assert [result.terms["tempo"][1, k] for k in (0, 2, 3)] == [1.0, 1.0, 1.0]
  assert np.isfinite(result.audio).all() and np.max(np.abs(result.audio)) > 0.01
  with open(paths["report"]) as f:
    assert json.load(f)["tracks"][1]["tempo_bpm"] is None


@pytest.mark.parametrize("settings, message", [
    (dict(seconds=0.0), "seconds=0.0"),
    (dict(seconds=4.0, crossfade=4.0), "crossfade=4.0"),
    (dict(crossfade=-1.0), "crossfade=-1.0"),
    (dict(num_random=0), "num_random=0"),
    (dict(rule="loudest"), "rule='loudest'"),
])
def test_make_mix_names_a_bad_setting(settings, message):
  tracks = [mix.Track(id=f"t{k}", audio=np.zeros(RATE, np.float32), sample_rate=RATE,
                      embedding=np.ones(2)) for k in range(2)]
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    mix.make_mix(tracks, **settings)

