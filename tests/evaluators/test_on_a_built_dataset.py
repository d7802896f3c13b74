"""The dataset evaluators on a small built dataset, with a stand-in model whose
embeddings are fixed random vectors, against scikit-learn and numpy."""

import hashlib
import json

import numpy as np
import pytest
import soundfile
from sklearn import metrics as sk

from jplaylist.data import builder
from jplaylist.evaluators import retrieval
from jplaylist.evaluators import vocabulary
from jplaylist.evaluators import zero_shot


class HashModel:
  """Embeds each waveform and text as a fixed random unit vector of its bytes."""

  def _vector(self, data: bytes) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
    v = np.random.default_rng(seed).normal(size=8)
    return v / np.linalg.norm(v)

  def embed_audio(self, waveforms, sample_rate):
    return np.stack([self._vector(np.asarray(w, np.float32).tobytes()) for w in waveforms])

  def embed_text(self, texts):
    return np.stack([self._vector(t.encode()) for t in texts])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("attrs")
  rate, rng = 16_000, np.random.default_rng(0)
  moods, tempos = ["calm", "sad", "happy"], ["slow", "moderate", "fast"]
  rows = []
  for i in range(18):
    soundfile.write(root / f"{i}.wav", 0.3 * rng.standard_normal(rate), rate)
    rows.append({"id": f"r{i}", "audio": f"{i}.wav", "split": "test",
                 "texts": {"LF": [f"caption {i % 7}"]},
                 "attributes": {"mood": moods[i % 3], "tempo_class": tempos[(i // 3) % 3],
                                "instruments": ["flute", "cello"][: 1 + i % 2]}})
  (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return builder.build(manifest=str(root / "m.jsonl"), data_dir=str(root / "d"),
                       name="attrs", verbose=False).path


def test_zero_shot_values_and_words(dataset):
  model = HashModel()
  evaluator = zero_shot.ZeroShotTagging(
      dataset, "test", families=("tempo_class",), templates={"*": ("{tag} music",)},
      words={"tempo_class": {"slow": "slow tempo"}}, values={"tempo_class": ("slow", "fast")})
  results = dict(evaluator.run(model))
  data = zero_shot.load_split(dataset, "test")
  rows = [i for i, a in enumerate(data.attributes) if a["tempo_class"] != "moderate"]
  audio = model.embed_audio([data.waveforms[i] for i in rows], 16_000)
  text = model.embed_text(["slow tempo music", "fast music"])
  aucs = {t: sk.roc_auc_score([data.attributes[i]["tempo_class"] == t for i in rows],
                              audio @ text[j]) for j, t in enumerate(("slow", "fast"))}
  assert results["zero_shot/tempo_class/auc_roc"] == pytest.approx(np.mean(list(aucs.values())))
  assert results["zero_shot/tempo_class/tag/slow/auc_roc"] == pytest.approx(aucs["slow"])


def test_vocabulary_counts_evaluable_tags(dataset, tmp_path):
  path = tmp_path / "vocab.json"
  path.write_text(json.dumps({"v": ["cello", "calm", "techno"]}))
  model = HashModel()
  results = dict(vocabulary.VocabularyTagging(
      dataset, "test", vocabulary=str(path), name="v", templates=("{tag} music",),
      mapping={"cello": {"instruments": "cello"}, "calm": {"mood": ["calm"]}}).run(model))
  assert results["zero_shot_vocab/v/vocabulary_size"] == 3
  assert results["zero_shot_vocab/v/num_tags"] == 2
  data = zero_shot.load_split(dataset, "test")
  audio = model.embed_audio(data.waveforms, 16_000)
  y = [("cello" in a["instruments"]) for a in data.attributes]
  assert results["zero_shot_vocab/v/tag/cello/auc_roc"] == pytest.approx(sk.roc_auc_score(y, audio @ model.embed_text(["cello music"])[0]))


def test_caption_retrieval_ranks(dataset):
  model = HashModel()
  evaluator = retrieval.CaptionRetrieval(dataset, "test", source="LF", index=0)
  results = dict(evaluator.run(model))
  data = zero_shot.load_split(dataset, "test")
  captions = sorted({t["LF"][0] for t in data.texts})
  scores = model.embed_text(captions) @ model.embed_audio(data.waveforms, 16_000).T
  ranks = []
  for q, caption in enumerate(captions):
    order = np.argsort(-scores[q], kind="stable")
    ranks.append(1 + next(r for r, i in enumerate(order) if data.texts[i]["LF"][0] == caption))
  assert results["captions/text_to_music/median_rank"] == np.median(ranks)
  assert results["captions/text_to_music/recall@5"] == pytest.approx(np.mean(np.array(ranks) <= 5))
  assert results["captions/num_captions"] == 7
