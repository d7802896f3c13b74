"""Item2vec against gensim's Word2Vec: its tables, its update rule, and what it learns."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from jplaylist.playlists import evaluate
from jplaylist.playlists import item2vec
from tests.playlists.planted import planted_sequences

# gensim, the reference, is pinned in requirements-test.txt: missing, it is
# an install defect, not a skip.
from gensim import models as gensim_models  # pylint: disable=g-bad-import-order


def _unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _neighbours(vectors, k=10):
  cosine = _unit(vectors) @ _unit(vectors).T
  np.fill_diagonal(cosine, -np.inf)
  return np.argsort(-cosine, axis=1)[:, :k]


def _overlap(a, b):
  return float(np.mean([len(set(x) & set(y)) / a.shape[1] for x, y in zip(a, b)]))


def test_vocabulary_subsampling_and_negative_table_are_gensims():
  sequences, _ = planted_sequences(num_sequences=300, seed=3)
  sequences = sequences + [["rare"]]  # one token under min_count=2
  vocabulary = item2vec.build_vocabulary(sequences, min_count=2)
  reference = gensim_models.Word2Vec(vector_size=8, min_count=2, sample=1e-3, sg=1, negative=5,
                                     ns_exponent=0.75, seed=0, workers=1)
  reference.build_vocab(sequences)
  assert sorted(vocabulary.tokens) == sorted(reference.wv.index_to_key)
  assert "rare" not in vocabulary.index
  counts = {t: reference.wv.get_vecattr(t, "count") for t in vocabulary.tokens}
  assert dict(zip(vocabulary.tokens, vocabulary.counts.tolist())) == counts
  assert np.all(np.diff(vocabulary.counts) <= 0)  # most frequent first, as gensim
  keep = item2vec.keep_probabilities(vocabulary.counts, 1e-3)
  sample_int = np.array([reference.wv.get_vecattr(t, "sample_int") for t in vocabulary.tokens])
  np.testing.assert_allclose(keep, sample_int / 2**32, atol=1e-9)
  assert keep.min() < 0.9  # the frequent tracks are in fact thinned
  # The tables differ in token order among equal counts: compare each
  # token's share of the table.
  ours = np.diff(item2vec.cum_table(vocabulary.counts), prepend=0)
  theirs = np.diff(reference.cum_table.astype(np.int64), prepend=0)
  theirs = dict(zip(reference.wv.index_to_key, theirs))
  np.testing.assert_allclose(ours, [theirs[t] for t in vocabulary.tokens], atol=2)


def test_negatives_are_drawn_by_unigram_to_the_075():
  counts = np.array([1000, 300, 100, 30, 10, 1])
  table = jnp.asarray(item2vec.cum_table(counts), jnp.int32)
  draws = np.asarray(item2vec._draw_negatives(jax.random.key(0), table, (400_000,)))
  expected = counts**0.75 / np.sum(counts**0.75)
  np.testing.assert_allclose(np.bincount(draws, minlength=6) / len(draws), expected, atol=3e-3)


def test_skipgram_pairs_are_a_direct_loops():
  rng = np.random.default_rng(0)
  encoded = [rng.integers(0, 20, n).astype(np.int32) for n in (1, 7, 12, 3)]
  keep = rng.uniform(0.3, 1.0, 20)
  pairs = item2vec.skipgram_pairs(encoded, keep, 3, np.random.default_rng(5))
  # The same draws, used by word2vec's loop over positions and windows.
  draws = np.random.default_rng(5)
  flat = np.concatenate(encoded)
  kept = draws.random(len(flat)) < keep[flat]
  sequence = np.repeat(np.arange(4), [len(e) for e in encoded])[kept]
  tokens = flat[kept]
  reduced = draws.integers(1, 4, len(tokens))
  expected = []
  for s in range(4):
    positions = np.flatnonzero(sequence == s)
    for a, i in enumerate(positions):
      for b in range(max(0, a - reduced[i]), min(len(positions), a + reduced[i] + 1)):
        if b != a:
          expected.append((tokens[i], tokens[positions[b]], s))
  assert sorted(map(tuple, pairs.tolist())) == sorted(expected)


def test_one_update_is_word2vecs_rule():
  """A batch of one pair moves the vectors as gensim's fast_sentence_sg_neg does."""
  rng = np.random.default_rng(1)
  vocab, dim, alpha = 7, 5, 0.025
  params = {"input": rng.normal(size=(vocab, dim)).astype(np.float32),
            "output": rng.normal(size=(vocab, dim)).astype(np.float32)}
  target, source, negatives = 2, 4, np.array([3, 2, 6])  # a negative equal to the target
  grads, _ = jax.grad(lambda p: item2vec.sgns_loss(
      p, target=jnp.array([target]), source=jnp.array([source]),
      negatives=jnp.array([negatives]), weight=jnp.array([alpha])), has_aux=True)(params)
  syn0, syn1 = params["input"].copy(), params["output"].copy()
  work = np.zeros(dim)
  for d, token in enumerate([target, *negatives]):
    if d and token == target:
      continue  # gensim skips a negative equal to the target
    label = 1.0 if d == 0 else 0.0
    g = (label - 1.0 / (1.0 + np.exp(-syn0[source] @ params["output"][token]))) * alpha
    work += g * params["output"][token]
    syn1[token] += g * syn0[source]
  syn0[source] += work
  np.testing.assert_allclose(params["input"] - grads["input"], syn0, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(params["output"] - grads["output"], syn1, rtol=1e-5, atol=1e-6)


def test_learning_rates_are_the_alphas_gensim_gives_its_jobs(monkeypatch):
  """The rate of every sequence in every epoch equals the alpha that
  `Word2Vec(sentences)` hands the job holding it (read off its job queue)."""
  lengths = [4, 5, 6, 7, 12, 1, 3, 2, 9, 1, 8]  # one longer than batch_words
  rng = np.random.default_rng(0)
  sequences = [[f"w{w}" for w in rng.integers(0, 6, n)] for n in lengths]
  jobs = []  # (epoch, sequences in the job, its alpha)
  producer = gensim_models.word2vec.Word2Vec._job_producer

  def recording_producer(self, data_iterator, job_queue, cur_epoch=0, total_examples=None,
                         total_words=None):
    class Recorder:
      def put(self, job):
        if job is not None:
          jobs.append((cur_epoch, len(job[0]), job[1]))
        job_queue.put(job)
    return producer(self, data_iterator, Recorder(), cur_epoch, total_examples, total_words)

  monkeypatch.setattr(gensim_models.word2vec.Word2Vec, "_job_producer", recording_producer)
  gensim_models.Word2Vec(sequences, vector_size=4, min_count=1, sg=1, epochs=3, batch_words=10,
                         alpha=0.5, min_alpha=0.1, seed=0, workers=1)
  theirs = np.stack([np.repeat([a for e, _, a in jobs if e == epoch],
                               [n for e, n, _ in jobs if e == epoch]) for epoch in range(3)])
  ours = item2vec.job_learning_rates(lengths, epochs=3, batch_words=10, learning_rate=0.5,
                                     min_learning_rate=0.1)
  assert len(set(theirs[0].tolist())) >= 4  # several jobs per epoch: the steps matter
  np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_training_is_deterministic_by_seed():
  sequences, _ = planted_sequences(num_clusters=5, num_sequences=60, seed=2)
  config = item2vec.Item2VecConfig(dim=8, epochs=2, batch_size=64, steps_per_call=4)
  first = item2vec.train(sequences, config, log=lambda _: None)
  other = item2vec.train(sequences, item2vec.Item2VecConfig(
      dim=8, epochs=2, batch_size=64, steps_per_call=4, seed=1), log=lambda _: None)
  again = item2vec.train(sequences, config, log=lambda _: None)
  np.testing.assert_array_equal(first.input_vectors, again.input_vectors)
  assert not np.allclose(first.input_vectors, other.input_vectors)
  assert np.all(np.isfinite(first.epoch_losses))


def test_matches_gensim_on_planted_clusters():
  """Same sequences, same settings: item2vec learns what Word2Vec(sg=1) learns.

  Tolerances: nearest-neighbour overlap@10 with gensim at most 0.05 below two
  gensim seeds' overlap with each other (about 0.83 here); the share of
  neighbours in the track's own cluster within 0.03 of gensim's; next-track
  hit rate@10 on 400 held-out sequences within 0.07 of gensim's (about two
  standard errors of a difference of two such rates), and all far above random.
  """
  sequences, cluster = planted_sequences(seed=0)
  held_out, _ = planted_sequences(num_sequences=400, seed=1)
  ids = [f"t{i}" for i in range(len(cluster))]
  settings = dict(window=5, negative=5, sample=1e-3, min_count=1, epochs=5)
  ours = item2vec.train(sequences, item2vec.Item2VecConfig(dim=32, **settings),
                        log=lambda _: None)
  theirs = [gensim_models.Word2Vec(sequences, vector_size=32, sg=1, hs=0, seed=seed, workers=1,
                                   **settings) for seed in (0, 1)]
  vectors, known = ours.vectors(ids)
  assert known.all()
  gensim_vectors = [np.stack([m.wv[t] for t in ids]) for m in theirs]
  ours_nn = _neighbours(vectors)
  theirs_nn = [_neighbours(v) for v in gensim_vectors]
  gensim_agreement = _overlap(theirs_nn[0], theirs_nn[1])
  assert _overlap(ours_nn, theirs_nn[0]) >= gensim_agreement - 0.05
  in_cluster = lambda nn: float(np.mean(cluster[nn] == cluster[:, None]))
  assert abs(in_cluster(ours_nn) - in_cluster(theirs_nn[0])) <= 0.03
  assert in_cluster(ours_nn) > 0.8  # random: 14 / 599

  rows = [[int(t[1:]) for t in s] for s in held_out]
  table = evaluate.next_track_table(
      rows, {"item2vec": evaluate.cosine_scorer(vectors, context_size=5),
             "gensim": evaluate.cosine_scorer(gensim_vectors[0], context_size=5),
             "random": evaluate.random_scorer(len(ids))}, num_tracks=len(ids))
  hit = {m: v["hit_rate"] for m, v in table["subsets"]["all"]["methods"].items()}
  assert abs(hit["item2vec"] - hit["gensim"]) <= 0.07, hit
  assert hit["item2vec"] > 0.4 and hit["random"] < 0.05, hit


@pytest.mark.parametrize("mode", ["inline", "context"])
def test_extra_tokens_land_beside_their_tracks(mode):
  sequences, cluster = planted_sequences(num_clusters=8, cluster_size=10, num_sequences=400,
                                         max_length=8, noise=0.1, seed=4)
  extra = {f"t{t}": [f"style=s{cluster[t]}"] for t in range(len(cluster))}
  model = item2vec.train(sequences, item2vec.Item2VecConfig(dim=16, epochs=5,
                                                            extra_tokens=mode),
                         extra_tokens=extra, log=lambda _: None)
  for style in range(8):
    nearest = [t for t, _ in model.most_similar(f"style=s{style}", 30)
               if t.startswith("t")][:5]
    assert np.mean([cluster[int(t[1:])] == style for t in nearest]) >= 0.8, (style, nearest)
  # A track in no sequence is placed at the mean unit vector of its tokens.
  extra["unseen"] = ["style=s3", "style=s5", "no-such-token"]
  vectors, known = model.vectors_from_tokens(["t0", "unseen", "nothing"], extra)
  np.testing.assert_array_equal(known, [True, True, False])
  tokens = model.input_vectors[[model.vocabulary.index["style=s3"],
                                model.vocabulary.index["style=s5"]]]
  np.testing.assert_allclose(vectors[1], _unit(tokens).mean(0), rtol=1e-6)
  np.testing.assert_array_equal(vectors[0], model.vectors(["t0"])[0][0])


@pytest.mark.parametrize("field, value", [
    ("window", 0), ("epochs", 0), ("dim", 0), ("negative", 0), ("batch_size", 0),
    ("steps_per_call", 0), ("min_count", 0), ("batch_words", 0), ("sample", -1e-3),
    ("learning_rate", float("nan")), ("min_learning_rate", 0.5), ("extra_tokens", "inlined")])
def test_config_rejects_bad_values_by_name(field, value):
  with pytest.raises(ValueError, match=f"{field}="):
    item2vec.Item2VecConfig(**{field: value})


def test_training_counts_the_sequences_too_short_to_train_on():
  sequences = [["a", "b", "c"], ["a"], ["b", "c", "a", "b"], ["c"], ["zz"]]
  lines = []
  model = item2vec.train(sequences, item2vec.Item2VecConfig(dim=4, epochs=1, sample=0.0),
                         log=lines.append)
  assert model.dropped_sequences == 3
  assert "3 dropped" in lines[0]
  with pytest.raises(ValueError, match="no training pairs"):
    item2vec.train([["a"], ["b"]], item2vec.Item2VecConfig(dim=4), log=lambda _: None)
