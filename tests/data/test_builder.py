"""The TFDS builder on a folder that mixes good and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from jplaylist.data import audio_io
from jplaylist.data import builder

RATE = 16_000


def _tone(seconds, rate=RATE, channels=1, amplitude=0.3, freq=440.0):
  t = np.arange(int(seconds * rate)) / rate
  x = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
  return np.stack([x] * channels, axis=1) if channels > 1 else x


def _texts(tag):
  return {"SF": [f"{tag}, test"], "LF": [f"A test recording called {tag}."],
          "PL": f"{tag} mix", "ASET": ["Music"]}


def make_mixed_folder(root):
  """Writes audio files and a JSONL manifest; returns (manifest, expected)."""
  audio = os.path.join(root, "audio")
  os.makedirs(audio)
  path = lambda name: os.path.join(audio, name)  # noqa: E731
  soundfile.write(path("good_wav.wav"), _tone(2.0), RATE, subtype="PCM_16")
  soundfile.write(path("good_flac.flac"), _tone(1.5, freq=220), RATE)
  soundfile.write(path("good_ogg.ogg"), _tone(2.0, freq=330), RATE,
                  format="OGG", subtype="VORBIS")
  soundfile.write(path("good_mp3.mp3"), _tone(2.0, freq=550), RATE, format="MP3")
  soundfile.write(path("good_44k.wav"), _tone(3.0, rate=44_100), 44_100,
                  subtype="FLOAT")
  soundfile.write(path("good_dup.wav"), _tone(2.0, freq=660), RATE)
  soundfile.write(path("good_empty_one.wav"), _tone(2.0, freq=770), RATE)
  with open(path("unreadable.wav"), "wb") as f:
    f.write(b"RIFF this is not really a wave file at all" * 10)
  open(path("empty.wav"), "wb").close()
  soundfile.write(path("silent.wav"), np.zeros(2 * RATE, np.float32), RATE)
  nan = _tone(2.0)
  nan[100] = np.nan
  soundfile.write(path("nan.wav"), nan, RATE, subtype="FLOAT")
  soundfile.write(path("stereo.wav"), _tone(2.0, channels=2), RATE)
  soundfile.write(path("short.wav"), _tone(0.5), RATE)
  soundfile.write(path("frames0.wav"), np.zeros((0,), np.float32), RATE)

  rows = [
      {"id": "good_wav", "audio": "good_wav.wav", "texts": _texts("a"),
       "attributes": {"instrument": "flute"}},
      {"id": "good_flac", "audio": "good_flac.flac", "texts": _texts("b")},
      {"id": "good_ogg", "audio": "good_ogg.ogg", "texts": {"SF": "c, d"}},
      {"id": "good_mp3", "audio": "good_mp3.mp3", "texts": _texts("e")},
      {"id": "good_44k", "audio": "good_44k.wav", "texts": _texts("f")},
      {"id": "dup", "audio": "good_dup.wav", "texts": _texts("g")},
      {"id": "dup", "audio": "good_wav.wav", "texts": _texts("h")},
      {"id": "good_empty_one", "audio": "good_empty_one.wav",
       "texts": {"SF": ["fine"], "LF": ["", "   "]}},
      {"id": "unreadable", "audio": "unreadable.wav", "texts": _texts("i")},
      {"id": "empty", "audio": "empty.wav", "texts": _texts("j")},
      {"id": "frames0", "audio": "frames0.wav", "texts": _texts("j2")},
      {"id": "silent", "audio": "silent.wav", "texts": _texts("k")},
      {"id": "nan", "audio": "nan.wav", "texts": _texts("l")},
      {"id": "stereo", "audio": "stereo.wav", "texts": _texts("m")},
      {"id": "short", "audio": "short.wav", "texts": _texts("n")},
      {"id": "no_texts", "audio": "good_wav.wav"},
      {"id": "no_annotations", "audio": "good_wav.wav", "texts": {}},
      {"id": "empty_texts", "audio": "good_wav.wav", "texts": {"SF": [""], "LF": " "}},
      {"id": "missing", "audio": "missing.wav", "texts": _texts("o")},
      {"id": "", "audio": "good_wav.wav", "texts": _texts("p")},
      {"id": "bad_source", "audio": "good_wav.wav", "texts": {"XX": ["q"]}},
  ]
  lines = [json.dumps(r).encode() for r in rows]
  lines.insert(3, b"{not json")
  lines.append(b'{"id": "latin1", "audio": "good_wav.wav", "texts": {"SF": ["caf\xe9"]}}')
  manifest = os.path.join(audio, "manifest.jsonl")
  with open(manifest, "wb") as f:
    f.write(b"\n".join(lines) + b"\n")
  expected_kept = {"good_wav", "good_flac", "good_ogg", "good_mp3", "good_44k",
                   "dup", "good_empty_one"}
  expected_skipped = {
      "unreadable": 1, "empty": 2, "silent": 1, "non_finite": 1,
      "multi_channel": 1, "too_short": 1, "missing_annotations": 2,
      "empty_annotations": 1, "missing_file": 1, "duplicate_id": 1,
      "bad_row": 3, "non_utf8_text": 1,
  }
  return manifest, expected_kept, expected_skipped


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("mixed"))
  manifest, kept, skipped = make_mixed_folder(root)
  data_dir = os.path.join(root, "tfds")
  result = builder.build(manifest=manifest, data_dir=data_dir, name="mixed",
                         split_fractions=(1.0, 0.0, 0.0), verbose=False)
  return result, manifest, data_dir, kept, skipped


def _all_ids(path):
  ids = set()
  for split in ("train", "validation", "test"):
    try:
      source = builder.open_split(path, split)
    except ValueError:
      continue
    ids |= {source[i]["id"].decode() for i in range(len(source))}
  return ids


def test_bad_input_is_counted_by_reason_and_good_is_kept(mixed):
  result, _, _, kept, skipped = mixed
  assert result.report["skipped"] == dict(sorted(skipped.items()))
  assert result.report["skipped_total"] == sum(skipped.values())
  assert result.report["kept_total"] == len(kept)
  assert _all_ids(result.path) == kept
  # One record kept despite two empty annotations, which are counted.
  assert result.report["empty_annotations_dropped"] == 2


def test_report_is_saved_beside_the_data(mixed):
  result = mixed[0]
  with open(os.path.join(result.path, builder.REPORT_FILE)) as f:
    saved = json.load(f)
  assert saved["skipped"] == result.report["skipped"]
  reasons = {(r["id"], r["reason"]) for r in saved["skipped_records"]}
  assert ("nan", "non_finite") in reasons
  assert ("stereo", "multi_channel") in reasons
  assert ("latin1", "non_utf8_text") in reasons
  text = builder.format_report(saved)
  assert "non_finite 1" in text and "kept: train 7" in text


def test_first_of_duplicate_ids_wins(mixed):
  source = builder.open_split(mixed[0].path, "train")
  by_id = {source[i]["id"].decode(): source[i] for i in range(len(source))}
  expected = audio_io.load(os.path.join(os.path.dirname(mixed[1]), "good_dup.wav"),
                           audio_io.AudioChecks())
  np.testing.assert_array_equal(by_id["dup"]["audio"], expected)


def test_stored_audio_is_mono_int16_at_the_target_rate(mixed):
  source = builder.open_split(mixed[0].path, "train")
  by_id = {source[i]["id"].decode(): source[i] for i in range(len(source))}
  resampled = by_id["good_44k"]["audio"]
  assert resampled.dtype == np.int16
  assert abs(len(resampled) - 3 * RATE) <= 1
  original = by_id["good_wav"]["audio"]
  np.testing.assert_allclose(audio_io.int16_to_float(original), _tone(2.0), atol=1e-4)
  assert builder.sample_rate_of(mixed[0].path) == RATE
  texts = by_id["good_ogg"]["texts"]
  assert [t.decode() for t in texts["SF"]] == ["c, d"] and len(texts["LF"]) == 0
  assert json.loads(by_id["good_wav"]["attributes"]) == {"instrument": "flute"}
  assert [t.decode() for t in by_id["good_empty_one"]["texts"]["SF"]] == ["fine"]


def test_csv_manifest_gives_the_same_records(mixed, tmp_path):
  result, manifest, _, kept, _ = mixed
  audio_dir = os.path.dirname(manifest)
  rows = []
  for line in open(manifest, "rb").read().splitlines():
    try:
      row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
      continue
    if row.get("id") in kept and row["id"] != "dup":
      for source, texts in row["texts"].items():
        for text in [texts] if isinstance(texts, str) else texts:
          rows.append((row["id"], row["audio"], source, text))
  csv_path = tmp_path / "manifest.csv"
  with open(csv_path, "w", newline="") as f:
    import csv
    writer = csv.writer(f)
    writer.writerow(["id", "audio", "source", "text"])
    writer.writerows(rows)
    writer.writerow(["two_files", "good_wav.wav", "SF", "x"])
    writer.writerow(["two_files", "good_flac.flac", "SF", "y"])
  csv_result = builder.build(manifest=str(csv_path), audio_dir=audio_dir,
                             data_dir=str(tmp_path / "tfds"), name="csv",
                             split_fractions=(1.0, 0.0, 0.0), verbose=False)
  assert _all_ids(csv_result.path) == kept - {"dup"}
  assert csv_result.report["skipped"] == {"duplicate_id": 1}
  assert csv_result.report["empty_annotations_dropped"] == 2


def test_build_is_cached_until_its_input_changes(mixed):
  result, manifest, data_dir, _, _ = mixed
  again = builder.build(manifest=manifest, data_dir=data_dir, name="mixed",
                        split_fractions=(1.0, 0.0, 0.0), verbose=False)
  assert again.cached and again.report["fingerprint"] == result.report["fingerprint"]
  changed = builder.build(manifest=manifest, data_dir=data_dir, name="mixed",
                          split_fractions=(1.0, 0.0, 0.0), verbose=False,
                          checks=audio_io.AudioChecks(downmix=True))
  assert not changed.cached
  # With down-mixing the stereo file is kept too.
  assert "multi_channel" not in changed.report["skipped"]
  assert changed.report["kept_total"] == result.report["kept_total"] + 1


def test_split_assignment_is_deterministic_and_by_group():
  fractions = (0.8, 0.1, 0.1)
  splits = [builder.assign_split(f"g{i}", fractions, seed=3) for i in range(2000)]
  assert splits == [builder.assign_split(f"g{i}", fractions, seed=3) for i in range(2000)]
  counts = {s: splits.count(s) / len(splits) for s in set(splits)}
  assert abs(counts["train"] - 0.8) < 0.04 and abs(counts["test"] - 0.1) < 0.03
  assert splits != [builder.assign_split(f"g{i}", fractions, seed=4) for i in range(2000)]


def test_launcher_builds_a_folder(mixed, tmp_path):
  manifest = mixed[1]
  out = subprocess.run(
      [sys.executable, "-m", "launch.prepare_data", "--dataset=folder",
       f"--manifest={manifest}", f"--data_dir={tmp_path}", "--name=cli"],
      capture_output=True, text=True, check=True,
      cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  assert f"skipped {sum(mixed[4].values())}:" in out.stdout and "Dataset ready" in out.stdout
  report = json.load(open(tmp_path / "music_text" / "cli" / "1.0.0" / builder.REPORT_FILE))
  assert report["kept_total"] == 7


def test_launcher_rejects_folder_without_manifest(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "launch.prepare_data", "--dataset=folder",
       f"--data_dir={tmp_path}"], capture_output=True, text=True,
      cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  assert out.returncode != 0 and "--manifest and --name" in out.stderr
