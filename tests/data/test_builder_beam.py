"""The builder on Apache Beam (DirectRunner) against the single-process path.

One folder of good and bad input (`test_builder.make_mixed_folder`, plus rows
of web-like text for the text filter) is built through both paths; the two
must store the same records, field by field, in every split, and write the
same report. Apache Beam comes from requirements-beam.txt, which `make test`
installs: without it these tests fail rather than skip.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jplaylist.data import builder
from jplaylist.data import builder_beam
from jplaylist.data import split_audio
from jplaylist.data import text_filter
from tests.data import test_builder

# Three splits, each with good records (the groups hash that way at seed 0).
SPLIT_FRACTIONS = (0.5, 0.25, 0.25)
# Report fields that may differ between the two builds: where each was written.
# Everything else (fingerprint included: a Beam build is the same build) must match.
DIFFERING_FIELDS = ("path",)

WEB_ROWS = [
    {"id": "web_mixed", "audio": "good_flac.flac", "texts": {
        "SF": ["?", "violin, slow"],                               # too_short
        "LF": ["A slow, mournful melody for solo violin.",
               "a slow mournful melody for solo violin",           # near_duplicate
               "Click here to subscribe for more!",                # boilerplate
               "Follow the link: https://example.com/v"]}},        # url
    {"id": "web_none_left", "audio": "good_ogg.ogg", "texts": {   # all_texts_filtered
        "LF": ["Copyright 2020, all rights reserved.", "<p>Great track</p>"]}},
    {"id": "web_stereo", "audio": "stereo.wav", "texts": {        # then multi_channel
        "LF": ["An upbeat jazz trio.", "An upbeat jazz trio!"]}},
]


def _build(manifest, data_dir, beam, **kwargs):
  return builder.build(manifest=manifest, data_dir=data_dir, name="mixed",
                       split_fractions=SPLIT_FRACTIONS, verbose=False,
                       beam_runner="DirectRunner" if beam else None, **kwargs)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
  """{(filtered, beam): BuildResult}, the counters each Beam build read, and
  the skips expected without the text filter."""
  root = str(tmp_path_factory.mktemp("beam"))
  manifest, _, expected_skipped = test_builder.make_mixed_folder(root)
  web_manifest = os.path.join(os.path.dirname(manifest), "web.jsonl")
  with open(manifest, "rb") as f, open(web_manifest, "wb") as out:
    out.write(f.read() + b"".join(json.dumps(r).encode() + b"\n" for r in WEB_ROWS))
  counters = {}
  process = builder.MusicText._process_pipeline_result

  def spy(self, pipeline_result):
    process(self, pipeline_result)
    counters[self.builder_config.text_filter is not None] = self.pipeline_counters

  results = {"manifest": manifest}
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(builder.MusicText, "_process_pipeline_result", spy)
    for beam in (False, True):
      data_dir = os.path.join(root, "beam" if beam else "single")
      results[False, beam] = _build(manifest, data_dir, beam)
      results[True, beam] = _build(web_manifest, data_dir + "_filtered", beam,
                                   text_filter=text_filter.Settings())
  return results, counters, expected_skipped


def _records(path):
  """{split: [(id, every field as plain Python)]} in stored order."""
  out = {}
  for split in builder.list_splits(path):
    source = builder.open_split(path, split)
    out[split] = [(source[i]["id"].decode(), {
        "audio": (source[i]["audio"].dtype.str, source[i]["audio"].tobytes()),
        "texts": {k: [t.decode() for t in v] for k, v in source[i]["texts"].items()},
        "group": source[i]["group"].decode(),
        "attributes": json.loads(source[i]["attributes"]),
    }) for i in range(len(source))]
  return out


def _saved_report(result):
  with open(os.path.join(result.path, builder.REPORT_FILE)) as f:
    report = json.load(f)
  assert report == json.loads(json.dumps(result.report))
  return {k: v for k, v in report.items() if k not in DIFFERING_FIELDS}


@pytest.mark.parametrize("filtered", [False, True], ids=["plain", "text_filter"])
def test_beam_stores_the_same_records_in_every_split(builds, filtered):
  results, _, _ = builds
  single, beam = _records(results[filtered, False].path), _records(results[filtered, True].path)
  assert sorted(single) == ["test", "train", "validation"]
  assert sorted(beam) == sorted(single)
  for split in single:
    # The same ids in the same stored order, and every field equal.
    assert [i for i, _ in beam[split]] == [i for i, _ in single[split]], split
    assert beam[split] == single[split], split


@pytest.mark.parametrize("filtered", [False, True], ids=["plain", "text_filter"])
def test_beam_writes_the_same_split_audio_files(builds, filtered):
  """The samples of each split, joined from what the workers staged, and their
  index: byte for byte those of the single-process build."""
  results, _, _ = builds
  single, beam = results[filtered, False].path, results[filtered, True].path
  for split in builder.list_splits(single):
    for single_file, beam_file in zip(split_audio.audio_paths(single, split),
                                      split_audio.audio_paths(beam, split)):
      with open(single_file, "rb") as a, open(beam_file, "rb") as b:
        assert a.read() == b.read(), single_file
    assert builder.open_split(beam, split).layout == "split_file"
  assert not os.path.exists(os.path.join(beam, builder.STAGING_DIR))


@pytest.mark.parametrize("filtered", [False, True], ids=["plain", "text_filter"])
def test_beam_writes_the_same_report(builds, filtered):
  results, _, expected_skipped = builds
  single, beam = _saved_report(results[filtered, False]), _saved_report(results[filtered, True])
  assert beam == single
  assert results[filtered, True].path != results[filtered, False].path
  if filtered:
    expected_skipped = {**expected_skipped, "all_texts_filtered": 1,
                        "multi_channel": expected_skipped["multi_channel"] + 1}
  assert single["skipped"] == dict(sorted(expected_skipped.items()))
  assert len(single["skipped_records"]) == single["skipped_total"]
  assert single["kept"] == {"test": 2, "train": 2 + filtered, "validation": 3}
  if filtered:
    assert single["texts_filtered"] == {
        "too_short": 1, "too_long": 0, "url": 1, "boilerplate": 2, "non_text": 1,
        "near_duplicate": 2, "not_music": 0}
    files = [open(os.path.join(results[filtered, b].path, builder.FILTERED_FILE)).read()
             for b in (False, True)]
    assert files[0] == files[1] and len(files[0].splitlines()) == 7
  else:
    assert "texts_filtered" not in single


def test_the_report_counts_come_from_beam_counters(builds):
  results, counters, _ = builds
  # Audio checks and the text filter run in the pipeline; the manifest rows
  # rejected before it (found by the driver) are the rest of the report.
  assert counters[False] == {builder_beam.SKIPPED: {
      "empty": 2, "multi_channel": 1, "non_finite": 1, "silent": 1, "too_short": 1,
      "unreadable": 1}, builder_beam.TEXTS_FILTERED: {}}
  assert counters[True][builder_beam.SKIPPED] == {
      "all_texts_filtered": 1, "empty": 2, "multi_channel": 2, "non_finite": 1,
      "silent": 1, "too_short": 1, "unreadable": 1}
  assert counters[True][builder_beam.TEXTS_FILTERED] == {
      reason: n for reason, n in results[True, True].report["texts_filtered"].items() if n}


def test_launcher_builds_a_folder_with_beam(builds, tmp_path):
  results, _, expected_skipped = builds
  out = subprocess.run(
      [sys.executable, "-m", "launch.prepare_data", "--dataset=folder",
       f"--manifest={results['manifest']}", f"--data_dir={tmp_path}", "--name=cli",
       "--beam_runner=DirectRunner", "--beam_options=--direct_num_workers=1"],
      capture_output=True, text=True, check=True,
      cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  assert "Dataset ready" in out.stdout
  with open(tmp_path / "music_text" / "cli" / "1.0.0" / builder.REPORT_FILE) as f:
    report = json.load(f)
  assert report["skipped"] == dict(sorted(expected_skipped.items()))
  assert report["kept_total"] == 7
