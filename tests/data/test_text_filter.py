"""The patent's text filters: each rule, near-duplicates against an independent
Jaccard, the learned classifier's held-out precision and recall against
scikit-learn's, and the builder's counts by reason on a folder of web-like text."""

import itertools
import json
import os

import numpy as np
import pytest
import soundfile
from sklearn.metrics import jaccard_score, precision_score, recall_score

from jplaylist.data import builder
from jplaylist.data import ontology
from jplaylist.data import text_filter

RATE = 16_000


@pytest.mark.parametrize("text,reason", [
    ("A slow Baroque chorale for solo flute.", None),
    ("Calm Piano Favourites", None),
    ("flute, strings, slow, minor", None),
    ("Für Elise, gespielt auf dem Klavier.", None),          # letters beyond ASCII
    ("x", "too_short"),
    ("   ", "too_short"),
    ("la " * 400, "too_long"),
    ("Listen at https://example.com/track/17", "url"),
    ("more on www.music-blog.net", "url"),
    ("Stream it on soundcloud.com/artist", "url"),
    ("Click here to subscribe to our channel!", "boilerplate"),
    ("Copyright 2019 Records Ltd. All rights reserved.", "boilerplate"),
    ("We use cookies to improve your experience", "boilerplate"),
    ("\u00a9 2021 Label", "boilerplate"),
    ("<div class='post'>A sad song</div>", "non_text"),
    ("A sad song &amp; a happy one", "non_text"),
    ("12:04 | 3.5/5 | #1 ++ ###", "non_text"),
    ("bad \ufffd bytes", "non_text"),
    ("tab\x07bell", "non_text"),
])
def test_each_rule_names_its_reason(text, reason):
  assert text_filter.rule_reason(text, text_filter.Settings()) == reason


def test_near_duplicates_match_an_independent_jaccard():
  rng = np.random.default_rng(0)
  vocabulary = [f"w{i}" for i in range(14)]
  texts = []
  for _ in range(60):
    words = list(rng.choice(vocabulary, size=int(rng.integers(3, 9)), replace=False))
    if texts and rng.random() < 0.4:  # a variant of an earlier text
      words = texts[int(rng.integers(len(texts)))].split()
      if rng.random() < 0.5:
        words = words + [vocabulary[int(rng.integers(14))]]
      rng.shuffle(words)
    texts.append(" ".join(words))
  settings = text_filter.Settings(min_letter_fraction=0.0, near_duplicate_jaccard=0.8)
  kept, filtered = text_filter.TextFilter(settings).apply([("r", {"LF": texts})])
  # Independent: scikit-learn's Jaccard on binary word indicators, greedily.
  indicators = np.array([[w in t.split() for w in vocabulary] for t in texts], int)
  expected, kept_rows = [], []
  for i, row in enumerate(indicators):
    if any(jaccard_score(row, indicators[j]) >= 0.8 for j in kept_rows):
      continue
    kept_rows.append(i)
    expected.append(texts[i])
  assert kept[0]["LF"] == expected
  assert len(filtered) == len(texts) - len(expected) > 5
  assert {f.reason for f in filtered} == {"near_duplicate"}


def test_near_duplicates_are_per_recording_and_source():
  kept, filtered = text_filter.TextFilter().apply([
      ("a", {"SF": ["Flute, slow"], "ASET": ["flute slow"]}),
      ("b", {"SF": ["flute,  SLOW!", "flute, slow"]})])
  assert kept == [{"SF": ["Flute, slow"], "ASET": ["flute slow"]}, {"SF": ["flute,  SLOW!"]}]
  assert [(f.record_id, f.reason) for f in filtered] == [("b", "near_duplicate")]


def test_settings_are_checked():
  with pytest.raises(ValueError, match="threshold"):
    text_filter.Settings(threshold=1.5)
  with pytest.raises(ValueError, match="min_chars"):
    text_filter.Settings(min_chars=10, max_chars=5)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
  """The classifier on the full ontology, held-out classes and figures."""
  train_set, heldout = text_filter.training_set(ontology.default_path(full=True))
  model, info = text_filter.train(train_set, c_grid=(1.0, 10.0), folds=3)
  path = str(tmp_path_factory.mktemp("text_filter") / "classifier.npz")
  model.save(path)
  return model, info, heldout, path


def test_training_set_holds_classes_out_by_class(classifier):
  _, _, heldout, _ = classifier
  train_set, heldout2 = text_filter.training_set(ontology.default_path(full=True))
  assert heldout2.texts == heldout.texts  # deterministic
  assert not set(train_set.texts) & set(t for t, k in zip(heldout.texts, heldout.kinds)
                                        if k == "ontology description")
  music_names = ontology.names()  # the music subtree file, an independent list
  for text, label, kind in zip(heldout.texts + train_set.texts,
                               np.r_[heldout.labels, train_set.labels],
                               heldout.kinds + train_set.kinds):
    if kind == "ontology name":
      assert label == int(text in music_names), text
  assert 0.15 < len(heldout.texts) / (len(heldout.texts) + len(train_set.texts)) < 0.35


def test_classifier_held_out_precision_and_recall(classifier):
  model, info, heldout, path = classifier
  report = text_filter.evaluate(model, heldout, threshold=0.5)
  predicted = model.probability(heldout.texts) >= 0.5
  assert report["all"]["precision"] == pytest.approx(precision_score(heldout.labels, predicted))
  assert report["all"]["recall"] == pytest.approx(recall_score(heldout.labels, predicted))
  # Descriptions of classes never seen in training, music against the rest.
  assert report["all"]["precision"] > 0.8 and report["all"]["recall"] > 0.8, report
  # Saved and loaded, it scores the same.
  loaded = text_filter.MusicTextClassifier.load(path)
  np.testing.assert_allclose(loaded.probability(heldout.texts[:20]),
                             model.probability(heldout.texts[:20]), rtol=1e-6)
  assert info["C"] in (1.0, 10.0)


def _folder(root):
  """Three recordings with clean, web-like and non-music texts."""
  os.makedirs(os.path.join(root, "audio"))
  t = np.arange(2 * RATE) / RATE
  for i in range(3):
    soundfile.write(os.path.join(root, "audio", f"r{i}.wav"),
                    (0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t)).astype(np.float32), RATE)
  rows = [
      {"id": "r0", "audio": "r0.wav", "texts": {
          "SF": ["violin, slow, sad"],
          "LF": ["A slow, mournful melody for solo violin.",
                 "a slow mournful melody for solo violin",         # near_duplicate
                 "Click here to subscribe for more!",              # boilerplate
                 "Follow the link: https://example.com/v"],        # url
          "PL": ["Sad Violin"]}},
      {"id": "r1", "audio": "r1.wav", "texts": {
          "SF": ["?"],                                              # too_short
          "LF": ["An upbeat jazz trio with piano, bass and drums.",
                 "<p>Great track</p>",                              # non_text
                 "The ferry to the island leaves every hour from the harbour."],
          "PL": ["Road trip jazz"]}},
      {"id": "r2", "audio": "r2.wav", "texts": {                  # nothing left
          "LF": ["Copyright 2020, all rights reserved.",
                 "Delicious recipes for a quick weeknight dinner with chicken."]}},
  ]
  manifest = os.path.join(root, "audio", "manifest.jsonl")
  with open(manifest, "w") as f:
    f.write("\n".join(json.dumps(r) for r in rows) + "\n")
  return manifest


def test_builder_counts_filtered_texts_by_reason(classifier, tmp_path):
  _, _, _, path = classifier
  manifest = _folder(str(tmp_path))
  result = builder.build(manifest=manifest, data_dir=str(tmp_path / "tfds"), name="web",
                         split_fractions=(1.0, 0.0, 0.0), verbose=False,
                         text_filter=text_filter.Settings(classifier=path))
  report = result.report
  assert report["texts_filtered"] == {
      "too_short": 1, "too_long": 0, "url": 1, "boilerplate": 2, "non_text": 1,
      "near_duplicate": 1, "not_music": 2}
  assert report["texts_filtered_total"] == 8
  assert report["skipped"] == {"all_texts_filtered": 1}
  with open(os.path.join(result.path, builder.FILTERED_FILE)) as f:
    listed = [json.loads(line) for line in f]
  assert len(listed) == 8
  not_music = sorted(x["text"] for x in listed if x["reason"] == "not_music")
  assert not_music[0].startswith("Delicious") and not_music[1].startswith("The ferry")
  assert all(0 <= x["score"] < 0.5 for x in listed if x["reason"] == "not_music")
  source = builder.open_split(result.path, "train")
  texts = {source[i]["id"].decode(): {k: [t.decode() for t in v]
                                      for k, v in source[i]["texts"].items()}
           for i in range(len(source))}
  assert texts == {
      "r0": {"SF": ["violin, slow, sad"], "LF": ["A slow, mournful melody for solo violin."],
             "PL": ["Sad Violin"], "ASET": []},
      "r1": {"SF": [], "LF": ["An upbeat jazz trio with piano, bass and drums."],
             "PL": ["Road trip jazz"], "ASET": []}}
  assert "texts filtered 8" in builder.format_report(report)
  # Another threshold is another build (the settings are in the fingerprint).
  again = builder.build(manifest=manifest, data_dir=str(tmp_path / "tfds"), name="web",
                        split_fractions=(1.0, 0.0, 0.0), verbose=False,
                        text_filter=text_filter.Settings(classifier=path, threshold=0.01))
  assert not again.cached and again.report["texts_filtered"]["not_music"] <= 2
  assert builder.build(manifest=manifest, data_dir=str(tmp_path / "tfds"), name="web",
                       split_fractions=(1.0, 0.0, 0.0), verbose=False,
                       text_filter=text_filter.Settings(classifier=path,
                                                        threshold=0.01)).cached


def test_every_combination_of_reasons_is_counted_once():
  texts = ["ok text here", "http://x.org", "x", "ok text here!"]
  for perm in itertools.permutations(texts):
    kept, filtered = text_filter.TextFilter().apply([("r", {"LF": list(perm)})])
    assert text_filter.count(filtered) == {
        "too_short": 1, "too_long": 0, "url": 1, "boilerplate": 0, "non_text": 0,
        "near_duplicate": 1, "not_music": 0}
    assert len(kept[0]["LF"]) == 1
