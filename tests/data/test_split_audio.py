"""Windowed reads: the split audio files against the samples decoded from source.

One manifest of recordings of many lengths (shorter than the window, exactly
one window, one and two samples longer, several windows) is built in both
audio layouts. Windows read through the split file must equal numpy slices of
the audio decoded independently from the source files, and the pipeline must
draw the same examples from either layout. (Resuming an iterator exactly is
tests/data/test_pipeline.py's, whose datasets are built in the default,
split-file layout.)
"""

import json
import os
import pickle
import shutil

import numpy as np
import pytest
import soundfile

from jplaylist.data import audio_io
from jplaylist.data import builder
from jplaylist.data import pipeline
from jplaylist.data import split_audio

RATE = 16_000
WINDOW_S = 1.0
WINDOW = int(WINDOW_S * RATE)
# Samples of each recording: short ones are padded, the rest windowed; the
# 1- and 2-sample excesses make the last start (the window at the end) likely.
LENGTHS = [int(0.3 * RATE), WINDOW - 1, WINDOW, WINDOW + 1, WINDOW + 2,
           int(2.5 * RATE) + 7, int(7.3 * RATE), int(1.7 * RATE), int(0.2 * RATE) + 3]
CHECKS = audio_io.AudioChecks(min_duration_s=0.1)


def _write_corpus(root):
  """Noise recordings (every sample differs); three of them in split test."""
  audio_dir = os.path.join(root, "audio")
  os.makedirs(audio_dir)
  rng = np.random.default_rng(7)
  rows = []
  for k, length in enumerate(LENGTHS):
    x = (0.2 * rng.standard_normal(length)).clip(-0.9, 0.9).astype(np.float32)
    soundfile.write(os.path.join(audio_dir, f"r{k}.wav"), x, RATE, subtype="PCM_16")
    rows.append({"id": f"r{k}", "audio": f"audio/r{k}.wav",
                 "split": "test" if k % 3 == 2 else "train",
                 "texts": {"SF": [f"tag {k}", "other tag"], "LF": [f"A recording {k}."]},
                 "attributes": {"style": "odd" if k % 2 else "even"}})
  manifest = os.path.join(root, "manifest.jsonl")
  with open(manifest, "w") as f:
    f.write("\n".join(json.dumps(r) for r in rows))
  return manifest


def _build(manifest, data_dir, layout, **kwargs):
  return builder.build(manifest=manifest, data_dir=data_dir, name="lengths",
                       checks=CHECKS, audio_layout=layout, verbose=False, **kwargs)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """(manifest, {layout: BuildResult}, {id: samples decoded from the source file})."""
  root = str(tmp_path_factory.mktemp("split_audio"))
  # Sources apart from the builds: a build hashes every file of its audio folder.
  manifest = _write_corpus(os.path.join(root, "source"))
  results = {layout: _build(manifest, os.path.join(root, layout), layout)
             for layout in builder.AUDIO_LAYOUTS}
  decoded = {f"r{k}": audio_io.load(os.path.join(root, "source", "audio", f"r{k}.wav"),
                                    CHECKS)
             for k in range(len(LENGTHS))}
  assert [len(decoded[f"r{k}"]) for k in range(len(LENGTHS))] == LENGTHS
  return manifest, results, decoded


def test_split_files_hold_every_sample_and_records_hold_none(corpus):
  _, results, decoded = corpus
  path = results["split_file"].path
  assert not os.path.exists(os.path.join(path, builder.STAGING_DIR))
  raw = builder.open_split(path, "train")._records  # the TFDS records alone
  assert "audio" not in raw[0] and "num_samples" in raw[0]
  for split in ("train", "test"):
    samples_path, index_path = split_audio.audio_paths(path, split)
    index = np.load(index_path)
    source = builder.open_split(path, split)
    assert source.layout == "split_file" and index.shape == (len(source), 2)
    ids = [source[i]["id"].decode() for i in range(len(source))]
    # Spans end to end, in stored order, each of its record's length.
    np.testing.assert_array_equal(index[:, 1], [len(decoded[i]) for i in ids])
    np.testing.assert_array_equal(index[:, 0], np.cumsum(index[:, 1]) - index[:, 1])
    assert os.path.getsize(samples_path) == 2 * index[:, 1].sum()
    assert [int(source[i]["num_samples"]) for i in range(len(source))] == list(index[:, 1])
  # The earlier layout: samples in the records, no split files.
  old = results["record"].path
  assert not any(name.endswith((".audio", ".audio_index.npy")) for name in os.listdir(old))
  assert builder.open_split(old, "train").layout == "record"
  assert "audio" in builder.open_split(old, "train")._records[0]


@pytest.mark.parametrize("layout", ["split_file", "record"])
def test_stored_audio_equals_the_decoded_source(corpus, layout):
  _, results, decoded = corpus
  for split in ("train", "test"):
    source = builder.open_split(results[layout].path, split)
    for record in source:
      audio = record["audio"]
      assert audio.dtype == np.int16
      assert isinstance(audio, np.memmap) == (layout == "split_file")
      np.testing.assert_array_equal(audio, decoded[record["id"].decode()])


def test_windows_equal_numpy_slices_of_the_full_recording(corpus):
  """Many draws per record, each against an independent numpy slice."""
  _, results, decoded = corpus
  for split in ("train", "test"):
    source = builder.open_split(results["split_file"].path, split)
    for i in range(len(source)):
      record = source[i]
      full = decoded[record["id"].decode()]
      n = len(full)
      # The first and the last window, read directly from the view.
      np.testing.assert_array_equal(record["audio"][:WINDOW], full[:WINDOW])
      np.testing.assert_array_equal(record["audio"][max(0, n - WINDOW):], full[max(0, n - WINDOW):])
      starts = set()
      for seed in range(200):
        window, length = pipeline.cut_window(record["audio"], WINDOW,
                                             np.random.default_rng([seed, i]))
        reference = np.random.default_rng([seed, i])
        expected = np.zeros(WINDOW, np.int16)
        if n >= WINDOW:
          start = int(reference.integers(0, n - WINDOW + 1))
          starts.add(start)
          expected[:] = full[start:start + WINDOW]
        else:
          expected[:n] = full
        assert length == min(n, WINDOW)
        np.testing.assert_array_equal(window, expected)
        assert not isinstance(window, np.memmap)  # a copy, not a view of the file
      if 0 <= n - WINDOW <= 2:  # every start drawn, the one at the end too
        assert starts == set(range(n - WINDOW + 1))


def _options(**overrides):
  base = dict(batch_size=3, seed=5, window_seconds=WINDOW_S, max_text_length=16)
  return pipeline.PipelineOptions(**{**base, **overrides})


@pytest.mark.parametrize("worker_count", [0, 2])
def test_pipeline_examples_are_the_same_in_both_layouts(corpus, worker_count):
  _, results, _ = corpus
  labels = pipeline.LabelOptions(field="style", classes=["even", "odd"])
  for split, kwargs in (("train", {}), ("test", {}), ("train", {"labels": labels})):
    batches = {}
    for layout, result in results.items():
      it = iter(pipeline.make_loader(result.path, split,
                                     _options(worker_count=worker_count), **kwargs))
      batches[layout] = [next(it) for _ in range(6)]
    for new, old in zip(batches["split_file"], batches["record"]):
      assert new.keys() == old.keys()
      for key in new:
        np.testing.assert_array_equal(new[key], old[key], err_msg=f"{split} {key}")
    lengths = np.concatenate([b["audio_length"] for b in batches["split_file"]])
    assert (lengths < WINDOW).any() and (lengths == WINDOW).any()


def test_a_source_pickles_without_its_mapping(corpus):
  source = builder.open_split(corpus[1]["split_file"].path, "train")
  before = np.array(source[1]["audio"])  # maps the file
  copy = pickle.loads(pickle.dumps(source))
  assert copy._samples is None
  np.testing.assert_array_equal(copy[1]["audio"], before)


def test_the_layout_is_part_of_the_build_fingerprint(corpus, tmp_path):
  manifest, results, _ = corpus
  assert results["split_file"].report["audio_layout"] == "split_file"
  assert (results["split_file"].report["fingerprint"]
          != results["record"].report["fingerprint"])
  data_dir = os.path.dirname(os.path.dirname(os.path.dirname(results["record"].path)))
  assert _build(manifest, data_dir, "record").cached
  # Asking another layout of the same folder rebuilds it in that layout.
  copy_dir = str(tmp_path / "copy")
  shutil.copytree(data_dir, copy_dir)
  rebuilt = _build(manifest, copy_dir, "split_file")
  assert not rebuilt.cached and builder.open_split(rebuilt.path, "train").layout == "split_file"
  with pytest.raises(ValueError, match="audio_layout"):
    _build(manifest, copy_dir, "chunks")


def test_an_index_that_does_not_match_the_records_is_an_error(corpus, tmp_path):
  path = str(tmp_path / "dataset")
  shutil.copytree(corpus[1]["split_file"].path, path)
  _, index_path = split_audio.audio_paths(path, "train")
  np.save(index_path, np.load(index_path)[:-1])
  with pytest.raises(ValueError, match="audio_index.npy indexes .* rebuild the dataset"):
    builder.open_split(path, "train")
  os.remove(index_path)  # as if the build stopped before joining the samples
  with pytest.raises(ValueError, match="audio_index.npy is missing .* rebuild the dataset"):
    builder.open_split(path, "train")
