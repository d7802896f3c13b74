"""Zero-shot tagging and text-to-music retrieval against independent computations."""

import numpy as np
import pytest
from sklearn import metrics as sk

from jplaylist import inference
from jplaylist.evaluators import zero_shot


@pytest.fixture(scope="module")
def model(trained_workdir):
  return inference.load(trained_workdir, batch_size=4)


def test_tag_labels_are_multi_label_for_lists():
  attributes = [{"instruments": ["flute", "cello"], "mode": "minor"},
                {"instruments": ["piano"], "mode": "major"}, {"mode": "minor"}]
  tags, labels = zero_shot.tag_labels(attributes, "instruments")
  assert tags == ["cello", "flute", "piano"]
  np.testing.assert_array_equal(labels, [[1, 1, 0], [0, 0, 1], [0, 0, 0]])
  tags, labels = zero_shot.tag_labels(attributes, "mode")
  assert tags == ["major", "minor"] and labels.sum() == 3
  assert zero_shot.word_of({"mode": {"minor": "minor key"}}, "mode", "minor") == "minor key"


def test_zero_shot_auc_equals_scikit_learn_on_independent_scores(model, tiny_demo):
  path = tiny_demo[0].path
  evaluator = zero_shot.ZeroShotTagging(path, "train", families=("instrument_families",),
                                        templates=("{}", "music with {}"))
  results = dict(evaluator.run(model))
  # Independently: embed every recording and each tag's two prompts.
  data = zero_shot.load_split(path, "train")
  families = [a["instrument_families"] for a in data.attributes]
  tags = sorted({f for fs in families for f in fs})
  audio = model.embed_audio(data.waveforms, 16_000)
  prompts = model.embed_text([p for t in tags for p in (t, f"music with {t}")])
  text = prompts.reshape(len(tags), 2, -1).mean(axis=1)
  text /= np.linalg.norm(text, axis=1, keepdims=True)
  scores = audio @ text.T
  aucs, aps = [], []
  for j, tag in enumerate(tags):
    y = np.array([tag in fs for fs in families])
    if y.any() and not y.all():
      aucs.append(sk.roc_auc_score(y, scores[:, j]))
      aps.append(sk.average_precision_score(y, scores[:, j]))
  assert results["zero_shot/instrument_families/auc_roc"] == pytest.approx(np.mean(aucs), abs=1e-6)
  assert results["zero_shot/instrument_families/pr_auc"] == pytest.approx(np.mean(aps), abs=1e-6)
  assert results["zero_shot/instrument_families/num_tags"] == len(aucs)


def test_text_to_music_map_equals_scikit_learn(model, tiny_demo):
  from jplaylist.evaluators import metrics, retrieval
  path = tiny_demo[0].path
  evaluator = retrieval.TextToMusic(path, "train", templates={"k": "{mood} {style} music"})
  results = dict(evaluator.run(model))
  relevant, scores = evaluator.scores(model)
  data = zero_shot.load_split(path, "train")
  # Every recording with the query's mood and style is relevant.
  for q, conditions in enumerate(evaluator.conditions):
    expected = [a["mood"] == conditions["mood"] and a["style"] == conditions["style"]
                for a in data.attributes]
    np.testing.assert_array_equal(relevant[q], expected)
  aps = [sk.average_precision_score(relevant[q], scores[q]) for q in range(len(scores))]
  assert results["text_to_music/all/map"] == pytest.approx(np.mean(aps), abs=1e-6)
  n = relevant.shape[1]
  assert results["text_to_music/chance_map"] == pytest.approx(np.mean(
      metrics.random_average_precision(relevant.sum(axis=1), n)))
  assert results["text_to_music/relevant_fraction"] == pytest.approx(relevant.mean())
