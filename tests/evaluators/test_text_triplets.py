"""Text triplets from the AudioSet ontology, and the mean-pooled MiniLM baseline."""

import numpy as np
import torch
import transformers

from jplaylist.data import ontology
from jplaylist.data import tokenizer
from jplaylist.evaluators import text_triplets
from jplaylist.models import bert


def test_triplets_follow_the_ontology():
  classes = ontology.load()
  anchors, positives, negatives = text_triplets.build_triplets(classes, seed=1)
  by_name = {c.name: c.description for c in classes}
  assert len(anchors) == sum(1 for c in classes if c.description.strip())
  for anchor, positive, negs in zip(anchors, positives, negatives):
    assert by_name[anchor] == positive
    assert len(negs) == 5 and positive not in negs and len(set(negs)) == 5
  assert text_triplets.build_triplets(classes, seed=1) == (anchors, positives, negatives)


def test_triplet_accuracy_counts_every_negative():
  vectors = {"a": [1.0, 0.0], "p": [0.8, 0.6], "n1": [0.0, 1.0], "n2": [1.0, 0.0]}
  embed = lambda texts: np.array([vectors[t] for t in texts])  # noqa: E731
  # cos(a, p) = 0.8 beats n1 (0.0) but not n2 (1.0): one triplet of two.
  assert text_triplets.triplet_accuracy(embed, ["a"], ["p"], [["n1", "n2"]]) == 0.5


def test_mean_pooled_minilm_equals_the_pytorch_sentence_embedding():
  texts = ["Music that evokes or conveys feelings of sadness.", "Flute", "Jazz"]
  ours = text_triplets.mean_pooled_minilm(texts)
  model = transformers.BertModel.from_pretrained(bert.default_minilm_path()).eval()
  ids, mask = tokenizer.encode(texts, 128)
  with torch.no_grad():
    hidden = model(input_ids=torch.tensor(ids, dtype=torch.long),
                   attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state
  m = torch.tensor(mask, dtype=torch.float32)[..., None]
  reference = ((hidden * m).sum(1) / m.sum(1)).numpy()
  reference /= np.linalg.norm(reference, axis=1, keepdims=True)
  np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_the_untuned_text_tower_beats_chance_on_ontology_triplets():
  evaluator = text_triplets.TextTriplets()
  accuracy = text_triplets.triplet_accuracy(
      text_triplets.mean_pooled_minilm, evaluator.anchors, evaluator.positives,
      evaluator.negatives)
  assert accuracy > 0.8  # a real sentence encoder, far above chance (0.5)
