"""Linear probes on frozen embeddings."""

import numpy as np

from jplaylist.evaluators import linear_probe


def test_probe_separates_separable_classes_and_not_noise():
  rng = np.random.default_rng(0)
  labels = rng.random((200, 3)) < 0.3
  informative = labels.astype(np.float64) * 2.0 + rng.normal(0, 0.3, (200, 3))
  x = np.concatenate([informative, rng.normal(size=(200, 5))], axis=1)
  auc = linear_probe.probe_auc(x[:120], labels[:120], x[120:], labels[120:])
  assert np.all(auc > 0.95)
  noise = rng.normal(size=(200, 8))
  auc_noise = linear_probe.probe_auc(noise[:120], labels[:120], noise[120:], labels[120:])
  assert np.all(np.abs(auc_noise - 0.5) < 0.2)


def test_classes_missing_from_a_split_are_left_out():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(40, 4))
  train_y = np.zeros((30, 2), bool)
  train_y[:10, 0] = True
  test_y = np.zeros((10, 2), bool)
  test_y[:3, 0] = True
  test_y[:3, 1] = True  # class 1 has no positive in train
  auc = linear_probe.probe_auc(x[:30], train_y, x[30:], test_y)
  assert not np.isnan(auc[0]) and np.isnan(auc[1])


def test_probe_evaluator_labels_and_embeds_each_split(trained_workdir, tiny_demo):
  from jplaylist import inference
  from jplaylist.evaluators import metrics, zero_shot
  model = inference.load(trained_workdir, batch_size=4)
  path = tiny_demo[0].path
  results = dict(linear_probe.LinearProbe(
      path, "train", "validation", families=("instruments",)).run(model))
  # Independently: embeddings, labels with the train split's tags, probes.
  train = zero_shot.load_split(path, "train")
  test = zero_shot.load_split(path, "validation")
  tags = sorted({i for a in train.attributes for i in a["instruments"]})
  train_y = np.array([[t in a["instruments"] for t in tags] for a in train.attributes])
  test_y = np.array([[t in a["instruments"] for t in tags] for a in test.attributes])
  auc = linear_probe.probe_auc(model.embed_audio(train.waveforms, 16_000), train_y,
                               model.embed_audio(test.waveforms, 16_000), test_y)
  if np.all(np.isnan(auc)):
    assert "linear_probe/instruments/auc_roc" not in results
  else:
    assert results["linear_probe/instruments/auc_roc"] == metrics.macro(auc)
