"""launch/dj_mix.py end to end on a tiny folder, and track loading from a dataset."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from jplaylist import library_index
from jplaylist.mixing import sources
from jplaylist.mixing import transitions
from tests.mixing.test_mix import _beat_track

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RATE = 16_000


def test_launcher_writes_mix_plot_and_report_from_a_folder(tmp_path):
  folder = tmp_path / "music"
  os.makedirs(folder / "sub")
  ids, attributes = [], []
  for k, bpm in enumerate([100, 140, 102, 138]):
    name = f"sub/track{k}.wav" if k % 2 else f"track{k}.flac"
    soundfile.write(folder / name, _beat_track(bpm, 8, pitch=57 + 2 * k, seed=k), RATE)
    ids.append(name)
    attributes.append({"tempo_bpm": bpm, "key": "A minor"} if k < 2 else {})
  soundfile.write(folder / "short.wav", np.zeros(RATE // 2, np.float32), RATE)
  ids.append("short.wav")
  attributes.append({})
  embeddings = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
  index = library_index.LibraryIndex(ids=ids, embeddings=embeddings, attributes=attributes,
                                     meta={"source": str(folder)})
  index_path = index.save(str(tmp_path / "library.npz"))
  output = tmp_path / "mix"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  out = subprocess.run([sys.executable, "-m", "launch.dj_mix", "--config=configs/dj_mix.py",
                        f"--index={index_path}", f"--audio_dir={folder}",
                        "--config.num_tracks=5", "--config.seconds=5",
                        "--config.crossfade=1", f"--output={output}"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
  assert "Mixed 4 tracks (1 skipped)" in out.stdout and "Total transition cost" in out.stdout
  assert "Weighted cost terms over all pairs" in out.stdout
  with open(output / "report.json") as f:
    report = json.load(f)
  assert sorted(report["order"]) == sorted(ids[:4])
  assert report["skipped"][0]["id"] == "short.wav"
  sources_of = {t["id"]: (t["tempo_source"], t["key_source"]) for t in report["tracks"]}
  assert sources_of["track0.flac"] == ("index", "index")
  assert sources_of["track2.flac"] == ("beat tracker", "chroma")
  audio, rate = soundfile.read(output / "mix.flac")
  assert rate == RATE and len(audio) / rate == report["mix_seconds"]
  assert os.path.getsize(output / "transitions.png") > 10_000


def test_tracks_of_a_dataset_index_carry_its_tempo_and_key(tiny_demo):
  from jplaylist.data import builder  # pylint: disable=g-import-not-at-top
  dataset = tiny_demo[0].path
  source = builder.open_split(dataset, "test")
  examples = [source[k] for k in range(len(source))]
  index = library_index.LibraryIndex(
      ids=[e["id"].decode() for e in examples] + ["not-a-record"],
      embeddings=np.eye(len(examples) + 1, dtype=np.float32),
      attributes=[{**json.loads(e["attributes"]), "split": "test"} for e in examples]
      + [{"split": "test"}], meta={})
  tracks, skipped = sources.tracks_of(index, list(range(len(index))), dataset=dataset)
  assert [t.id for t in tracks] == index.ids[:-1]
  assert skipped == [("not-a-record", f"not in splits test of {dataset}")]
  for track, example in zip(tracks, examples):
    attributes = json.loads(example["attributes"])
    assert track.tempo_bpm == attributes["tempo_bpm"]
    assert track.key == transitions.parse_key(attributes["key"])
    np.testing.assert_array_equal(track.audio * 32768.0,
                                  np.asarray(example["audio"], np.float32))


def test_select_keeps_the_order_of_given_ids_and_names_bad_ones():
  index = library_index.LibraryIndex(ids=["a", "b", "c", "d"],
                                     embeddings=np.eye(4, dtype=np.float32),
                                     attributes=[{}] * 4, meta={})
  assert sources.select(index, 0, ids=["c", "a"]) == [2, 0]
  drawn = sources.select(index, 3, seed=1)
  assert drawn == sorted(drawn) and len(set(drawn)) == 3
  with pytest.raises(ValueError, match="more than once: a, c"):
    sources.select(index, 0, ids=["c", "a", "b", "a", "c"])
  with pytest.raises(ValueError, match="not in the index: x"):
    sources.select(index, 0, ids=["a", "x"])
  for count in (0, 5):
    with pytest.raises(ValueError, match=f"num_tracks={count}"):
      sources.select(index, count)

