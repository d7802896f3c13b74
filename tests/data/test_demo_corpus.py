"""The built-in demo corpus: content, splits, annotations, determinism, caching."""

import collections
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from jplaylist.data import builder
from jplaylist.data import ontology
from jplaylist.data.demo import annotations
from jplaylist.data.demo import catalogue
from jplaylist.data.demo import corpus
from jplaylist.data.demo import instruments
from jplaylist.data.demo import render
from jplaylist.data.manifest import SOURCES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _examples(path):
  out = []
  for split in corpus.SPLITS:
    source = builder.open_split(path, split)
    out += [(split, source[i]) for i in range(len(source))]
  return out


def test_tiny_corpus_has_every_split_and_the_asked_size(tiny_demo):
  result, settings, _ = tiny_demo
  assert set(result.report["kept"]) == set(corpus.SPLITS)
  heldout = result.report["kept"][corpus.HELDOUT_SPLIT]
  assert heldout > 0
  assert result.report["kept_total"] - heldout == settings.num_recordings
  assert result.report["skipped_total"] == 0


def test_splits_are_by_composition(tiny_demo):
  splits_of = collections.defaultdict(set)
  for split, example in _examples(tiny_demo[0].path):
    splits_of[corpus.load_attributes(example)["composition"]].add(split)
  # Held-out-timbre renditions replay test compositions; nothing else is shared.
  assert all(len(s) == 1 or s == {"test", corpus.HELDOUT_SPLIT}
             for s in splits_of.values())
  assert len(splits_of) == tiny_demo[1].num_recordings // 2


def test_heldout_timbres_never_reach_train_validation_or_test(tiny_demo):
  soundfonts = collections.Counter()
  for split, example in _examples(tiny_demo[0].path):
    a = corpus.load_attributes(example)
    soundfonts[a["soundfont"]] += 1
    heldout = (a["soundfont"] == corpus.HELDOUT_SOUNDFONT
               and set(a["instruments"]) & set(corpus.HELDOUT_INSTRUMENTS))
    assert bool(heldout) == (split == corpus.HELDOUT_SPLIT), (split, a)
  assert set(soundfonts) == set(corpus.SOUNDFONTS)


def test_attributes_describe_exactly_what_plays(tiny_demo):
  for _, example in _examples(tiny_demo[0].path):
    a = corpus.load_attributes(example)
    ensemble = instruments.ENSEMBLES[a["ensemble"]]
    assert a["lead_instrument"] == ensemble.lead == a["part_instruments"][0]
    assert set(a["instruments"]) <= set(ensemble.players)
    assert a["instruments"] == list(dict.fromkeys(a["part_instruments"]))
    assert a["instrument_families"] == list(dict.fromkeys(
        instruments.INSTRUMENTS[n].family for n in a["instruments"]))
    assert a["ensemble_size"] == (1 if ensemble.solo else len(a["part_instruments"]))
    assert a["mood"] == annotations.MOODS[(a["tempo_class"], a["mode"])]
    low, high = corpus.TEMPO_RANGES[a["tempo_class"]]
    assert low <= a["tempo_bpm"] <= high
    assert a["key"] == f"{a['tonic']} {a['mode']}"
    samples = len(example["audio"])
    assert abs(samples / 16_000 - a["duration_s"]) < 1e-3


def test_every_source_kind_is_written_from_the_attributes(tiny_demo):
  names = ontology.names()
  kinds = collections.Counter()
  for _, example in _examples(tiny_demo[0].path):
    a = corpus.load_attributes(example)
    texts = {k: [t.decode() for t in v] for k, v in example["texts"].items()}
    kinds.update(k for k in SOURCES if texts[k])
    assert texts["SF"], "SF is never dropped"
    lead = instruments.INSTRUMENTS[a["lead_instrument"]]
    lead_words = {lead.name, *lead.synonyms}
    for tags in texts["SF"]:
      assert any(w in tags.split(", ") for w in lead_words), tags
    for label in texts["ASET"]:
      assert label in names
    if texts["ASET"]:
      assert lead.audioset in texts["ASET"]
    for sentence in texts["LF"]:
      assert sentence.endswith(".") and len(sentence.split()) >= 5
  assert kinds["SF"] == tiny_demo[0].report["kept_total"]


def test_wording_varies_and_heldout_templates_are_unseen():
  a = {"lead_instrument": "flute", "instruments": ["flute", "violin", "viola", "cello"],
       "instrument_families": ["woodwind", "bowed strings"], "ensemble": "flute with strings",
       "solo": False, "ensemble_size": 4, "style": "Baroque", "genre": "chorale",
       "composer": "J. S. Bach", "title": None, "tempo_class": "slow", "mode": "minor",
       "key": "G minor", "metre": "4/4", "sacred": True}
  train, heldout = collections.defaultdict(set), collections.defaultdict(set)
  for seed in range(200):
    rng = np.random.default_rng(seed)
    for kind, texts in annotations.annotate(a, rng).items():
      train[kind] |= set(texts)
    for kind, texts in annotations.heldout_queries(a, rng).items():
      heldout[kind] |= set(texts)
  assert len(train["LF"]) > 50 and len(train["PL"]) > 20 and len(train["SF"]) > 100
  assert not heldout["LF"] & train["LF"] and not heldout["PL"] & train["PL"]
  assert set(train["ASET"]) == {"Flute", "Violin, fiddle", "Bowed string instrument",
                                "Cello", "Wind instrument, woodwind instrument",
                                "Classical music", "Musical ensemble",
                                "Christian music", "Sad music"}
  assert "A slow Baroque chorale played on a solo flute in G minor." not in train["LF"]


def test_plan_is_deterministic_balanced_and_exact():
  settings = corpus.DemoSettings(num_recordings=300)
  tasks = corpus.plan(settings)
  assert tasks == corpus.plan(settings)
  assert sum(r.split != corpus.HELDOUT_SPLIT for t in tasks for r in t.renditions) == 300
  for task in tasks:
    for r in task.renditions:
      low, high = corpus.TEMPO_RANGES[r.tempo_class]
      assert low <= r.beats_per_minute <= high
      assert (r.split == corpus.HELDOUT_SPLIT) == corpus.plays_heldout_timbre(
          r.soundfont, r.ensemble) or r.split == corpus.HELDOUT_SPLIT
      if r.split != corpus.HELDOUT_SPLIT:
        assert not corpus.plays_heldout_timbre(r.soundfont, r.ensemble)
  assert corpus.TEMPO_RANGES["slow"][1] <= 72 and corpus.TEMPO_RANGES["fast"][0] >= 126
  assert annotations.MOODS == {("slow", "minor"): "sad", ("slow", "major"): "calm",
                               ("fast", "minor"): "tense", ("fast", "major"): "happy"}
  by_split = collections.defaultdict(set)
  for task in tasks:
    by_split[task.split].add(task.work.collection)
    assert len({r.ensemble for r in task.renditions}) == len(task.renditions)
  # Every style appears in every split.
  assert all(s == set(catalogue.COLLECTIONS) for s in by_split.values())
  other = corpus.plan(dataclasses.replace(settings, seed=1))
  assert [t.work for t in other] != [t.work for t in tasks]


def test_rendering_is_deterministic_and_follows_the_ensemble():
  work = catalogue.Work("bach_chorales", os.path.join("bach", "bwv66.6.mxl"))
  score = catalogue.parse(work, max_quarters=16)
  assert len(score.parts) == 4
  quartet = render.Performance("string quartet", 90.0, 0, 6.0, 1)
  audio, parts = render.render(score, quartet)
  again, _ = render.render(score, quartet)
  np.testing.assert_array_equal(audio, again)
  assert parts == ["violin", "violin", "viola", "cello"]
  solo, solo_parts = render.render(score, dataclasses.replace(quartet, ensemble="solo flute"))
  assert solo_parts == ["flute"]
  assert not np.allclose(audio[:len(solo)], solo[:len(audio)])
  # Tempo sets the length: half the speed, (about) twice the notes' span.
  slow, _ = render.render(score, render.Performance("solo piano", 45.0, 0, 60.0, 1))
  fast, _ = render.render(score, render.Performance("solo piano", 90.0, 0, 60.0, 1))
  tail = 0.8 * 16_000
  assert abs((len(slow) - tail) / (len(fast) - tail) - 2.0) < 0.05


def test_melodies_are_harmonised_in_key():
  work = catalogue.list_works("celtic_fiddle_tunes")[3]
  score = catalogue.parse(work, max_quarters=32)
  assert len(score.parts) == 4  # melody + alto, tenor, bass
  tonic = catalogue.pitch_class(score.tonic)
  scale = ({0, 2, 3, 5, 7, 8, 10} if score.mode == "minor" else {0, 2, 4, 5, 7, 9, 11})
  for part in score.parts[1:]:
    assert {(int(p) - tonic) % 12 for p in part[:, 2]} <= scale | {11}


def test_fit_range_moves_parts_into_the_instrument_range():
  flute = instruments.INSTRUMENTS["flute"]
  low = np.array([40.0, 43.0, 47.0, 52.0])
  fitted = render.fit_range(low, flute)
  assert np.all(fitted >= flute.low) and np.all(fitted <= flute.high)
  assert np.all((fitted - low) % 12 == 0)


def test_prepare_is_cached_and_rebuilt_when_settings_change(tiny_demo):
  result, settings, data_dir = tiny_demo
  again = corpus.prepare(data_dir, settings, num_workers=1, verbose=False)
  assert again.cached and again.path == result.path
  changed = corpus.prepare(data_dir, dataclasses.replace(settings, num_recordings=4,
                                                         seed=5),
                           name="demo_changed", num_workers=1, verbose=False)
  assert not changed.cached and changed.report["kept_total"] - changed.report[
      "kept"].get(corpus.HELDOUT_SPLIT, 0) == 4
  assert len(os.listdir(os.path.join(data_dir, "demo_source"))) == 2


def test_demo_launcher_end_to_end_with_worker_processes(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "launch.prepare_data", "--dataset=demo",
       f"--data_dir={tmp_path}", "--num_recordings=6", "--workers=2"],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "Dataset ready" in out.stdout and "train:" in out.stdout
  assert "Rendering demo corpus" in out.stdout + out.stderr  # progress is shown


def test_missing_ontology_fails_with_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv(ontology.ENV_VAR, str(tmp_path / "nope.json"))
  with pytest.raises(FileNotFoundError):
    corpus.prepare(str(tmp_path), corpus.DemoSettings(num_recordings=2),
                   ontology_path=str(tmp_path / "nope.json"), verbose=False)


def test_parts_entering_late_are_left_out_so_solos_are_not_silent():
  # BWV 149.7 has instrumental parts that enter only in the last bars.
  work = catalogue.Work("bach_chorales", os.path.join("bach", "bwv149.7.mxl"))
  score = catalogue.parse(work, max_quarters=60)
  assert all(part[0, 0] == 0.0 for part in score.parts)
  audio, _ = render.render(score, render.Performance("solo violin", 134.5, -2, 13.9, 1))
  assert len(audio) > 10 * 16_000
