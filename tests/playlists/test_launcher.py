"""launch/item2vec.py end to end on runlocal settings, and the pipeline's input checks."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import item2vec as item2vec_config
from jplaylist import library_index
from jplaylist.playlists import pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(REPO, ".cache", "jax_compilation")


def _env():
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  env["JAX_PLATFORMS"] = "cpu"
  env["JAX_COMPILATION_CACHE_DIR"] = CACHE
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  return env


def _library(path, num_tracks=120, num_clusters=6, dim=16):
  rng = np.random.default_rng(0)
  cluster = np.arange(num_tracks) % num_clusters
  centres = rng.normal(size=(num_clusters, dim))
  embeddings = centres[cluster] + 0.5 * rng.normal(size=(num_tracks, dim))
  embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
  attributes = [{"composer": f"composer {c}", "style": ["folk", "chant", "dance"][c % 3],
                 "instruments": ["flute"] if c % 2 else ["organ", "voice"]} for c in cluster]
  index = library_index.LibraryIndex(ids=[f"rec-{i}" for i in range(num_tracks)],
                                     embeddings=embeddings.astype(np.float32),
                                     attributes=attributes, meta={"source": "test"})
  return index.save(str(path))


def test_launcher_trains_evaluates_and_writes(tmp_path):
  index_path = _library(tmp_path / "library.npz")
  playlists = tmp_path / "playlists.txt"
  playlists.write_text("# two playlists and an id the library lacks\n"
                       "rec-0 rec-6 rec-12 rec-18\n\nrec-1 rec-7 not-in-library rec-13\n")
  output = tmp_path / "out"
  command = [sys.executable, "-m", "launch.item2vec",
             "--config=configs/item2vec.py:runlocal=True", "--from_study",
             f"--library={index_path}", f"--sequences={playlists}", f"--output={output}",
             "--config.item2vec.extra_tokens=inline"]
  out = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                       timeout=900)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
  assert "Report:" in out.stdout and "| audio_knn |" in out.stdout

  report = json.loads((output / "report.json").read_text())
  assert report["dropped_items"] == 1
  assert report["sources"]["playlists"]["playlists"] == 2
  assert report["sources"]["simulated"]["sequences"] > 0
  table = report["table"]
  assert list(table["subsets"]["all"]["methods"]) == [
      "item2vec", "mf_als", "item2vec_tokens", "audio_knn", "popularity", "random"]
  assert table["num_queries"] == report["num_test_sequences"] > 0
  for subset in table["subsets"].values():
    for metrics in subset["methods"].values():
      assert subset["count"] == 0 or 0.0 <= metrics["ndcg"] <= metrics["hit_rate"] <= 1.0

  with np.load(output / "embeddings.npz") as saved:
    assert saved["ids"].tolist() == [f"rec-{i}" for i in range(120)]
    assert saved["item2vec"].shape == (120, 16) and saved["mf_item_factors"].shape == (120, 8)
    assert saved["chosen_cold"].sum() == 12
    # Cold: the chosen tracks and any other in no training sequence.
    assert np.all(saved["cold"][saved["chosen_cold"]])
    assert saved["cold"].sum() == report["cold_tracks"]["total"] == (
        12 + report["cold_tracks"]["never_seen"])
    # Cold tracks were in no training sequence: item2vec has no vector for them.
    assert not np.any(saved["item2vec_known"] & saved["cold"])
    assert any(t.startswith("composer=") for t in saved["vocabulary"].tolist())
  assert "# Next-track ranking" in (output / "report.md").read_text()


def test_pipeline_needs_sequences_and_a_library_to_simulate(tmp_path):
  config = item2vec_config.get_config("runlocal=True")
  with pytest.raises(ValueError, match="--sequences"):
    pipeline.run(config, str(tmp_path))
  with pytest.raises(ValueError, match="--library"):
    pipeline.run(config, str(tmp_path), from_study=True)


def test_targets_only_in_held_out_sequences_are_cold(tmp_path):
  # Every playlist ends on a track of its own: a held-out playlist's target is
  # in no training sequence, though none was chosen cold.
  playlists = tmp_path / "playlists.txt"
  playlists.write_text("".join(f"a{i % 4} b{i % 4} c{(i + 1) % 4} solo{i}\n" for i in range(40)))
  config = item2vec_config.get_config("runlocal=True")
  config.evaluation.cold_fraction = 0.0
  config.evaluation.holdout_fraction = 0.25
  paths = pipeline.run(config, str(tmp_path / "out"), sequences_path=str(playlists),
                       log=lambda _: None)
  text = open(paths["report_json"]).read()
  report = json.loads(text)
  subsets = report["table"]["subsets"]
  assert report["num_test_sequences"] == subsets["cold"]["count"] == 10
  assert subsets["warm"]["count"] == 0
  assert report["cold_tracks"] == {"total": 10, "chosen": 0, "never_seen": 10}
  for name in ("item2vec", "mf_als", "popularity"):
    assert subsets["cold"]["methods"][name]["hit_rate"] == 0.0  # they never saw the targets
  # An empty subset has no metrics: null in the JSON, not NaN.
  assert "NaN" not in text and subsets["warm"]["methods"]["item2vec"]["hit_rate"] is None
  with np.load(paths["embeddings"]) as saved:
    assert saved["cold"].sum() == 10 and not saved["chosen_cold"].any()
    assert all(t.startswith("solo") for t in saved["ids"][saved["cold"]])
