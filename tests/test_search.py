"""Library search: exact top-k against numpy, filters against numpy masks,
faiss recall against exact search, and incremental folder indexes."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from jplaylist import inference
from jplaylist import library_index
from jplaylist import search

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 16_000
STYLES = ("Baroque", "Classical", "Romantic")
FAMILIES = ("woodwind", "brass", "strings", "keyboard")


def _library(embeddings, seed=0):
  """An index with scalar, list-valued and boolean attributes, drawn at random."""
  rng = np.random.default_rng(seed)
  attributes = [{"style": str(rng.choice(STYLES)),
                 "instrument_families": sorted(rng.choice(FAMILIES, rng.integers(1, 3),
                                                          replace=False).tolist()),
                 "solo": bool(rng.random() < 0.3)} for _ in range(len(embeddings))]
  return library_index.LibraryIndex(ids=[f"track{i:04d}" for i in range(len(embeddings))],
                                    embeddings=embeddings.astype(np.float32),
                                    attributes=attributes, meta={})


def _normalised(rng, rows, dim):
  x = rng.normal(size=(rows, dim)).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _all_scores(queries, embeddings, allowed=None, exclude=None):
  scores = np.atleast_2d(queries).astype(np.float64) @ embeddings.T.astype(np.float64)
  if allowed is not None:
    scores[:, ~allowed] = -np.inf
  if exclude is not None:
    scores[np.arange(len(scores)), exclude] = -np.inf
  return scores


def _reference(queries, embeddings, k, allowed=None, exclude=None):
  """Top-k rows by numpy: stable sort of -score, so equal scores rank by row."""
  scores = _all_scores(queries, embeddings, allowed, exclude)
  rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(scores, rows, 1), rows


def _assert_exact_top_k(got, queries, embeddings, k, allowed=None, exclude=None):
  """Each rank holds a row of the true score of that rank, no row twice.

  So rows may differ from numpy's only among scores closer than float32
  rounding (float64 numpy and float32 XLA sum in other orders); exact ties
  are checked on exactly representable data below."""
  scores = _all_scores(queries, embeddings, allowed, exclude)
  ref_scores, ref_rows = _reference(queries, embeddings, k, allowed, exclude)
  assert got.rows.shape == ref_rows.shape
  np.testing.assert_allclose(np.take_along_axis(scores, got.rows, 1), ref_scores, atol=2e-6)
  np.testing.assert_allclose(got.scores, ref_scores, atol=2e-6)
  assert all(len(set(r)) == len(r) for r in got.rows.tolist())


@pytest.fixture(scope="module")
def random_library():
  rng = np.random.default_rng(1)
  return _library(_normalised(rng, 1000, 32)), _normalised(rng, 8, 32)


@pytest.fixture(scope="module")
def chunked(random_library):
  return search.Searcher(random_library[0], chunk_rows=128)  # 8 chunks, the last partial


def test_exact_top_k_equals_numpy_chunked_or_not(random_library, chunked):
  index, queries = random_library
  whole = search.Searcher(index)
  assert whole.backend.chunk_rows >= len(index) and chunked.backend.chunk_rows == 128
  for k in (10, 150):  # 150 > the chunk size: a chunk gives its whole top-k
    for searcher in (chunked, whole):
      got = searcher.by_text(queries, k)
      _assert_exact_top_k(got, queries, index.embeddings, k)
      assert got.ids[3] == [index.ids[r] for r in got.rows[3]]
    np.testing.assert_array_equal(got.rows, chunked.by_text(queries, k).rows)


def test_equal_scores_rank_by_row_across_chunks():
  # Rows of four entries of +-1/2: unit norm, and every inner product a
  # multiple of 1/4, exact in float32 whatever the summation order.
  rng = np.random.default_rng(2)

  def grid(rows):
    x = np.zeros((rows, 32), np.float32)
    for row in x:
      row[rng.choice(32, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    return x

  embeddings, queries = grid(1000), grid(8)
  embeddings[500:520] = embeddings[3]  # exact duplicates in other chunks
  searcher = search.Searcher(_library(embeddings), chunk_rows=128)
  got = searcher.by_audio(queries, 150)
  ref_scores, ref_rows = _reference(queries, embeddings, 150)
  assert np.mean(ref_scores[:, :-1] == ref_scores[:, 1:]) > 0.5  # ties are the rule here
  np.testing.assert_array_equal(got.rows, ref_rows)
  np.testing.assert_array_equal(got.scores, ref_scores.astype(np.float32))
  # A query equal to a duplicated row finds it first, then its copies in row order.
  first = searcher.by_audio(embeddings[3], 150).rows[0, :21]
  assert first.tolist() == [3] + list(range(500, 520))


def test_filters_equal_numpy_masks(random_library, chunked):
  index, queries = random_library
  filters = {"style": "Baroque", "instrument_families": ["woodwind", "brass"]}
  mask = np.array([a["style"] == "Baroque" and bool({"woodwind", "brass"}
                                                    & set(a["instrument_families"]))
                   for a in index.attributes])
  assert 20 < mask.sum() < len(index) // 2
  np.testing.assert_array_equal(chunked.filter.mask(filters), mask)
  _assert_exact_top_k(chunked.by_text(queries, 10, filters=filters), queries,
                      index.embeddings, 10, mask)
  # Fewer matches than k: every match, and k shrinks to their number.
  few = {"style": ["Classical", "Romantic"], "solo": True, "instrument_families": "keyboard"}
  few_mask = np.array([a["style"] != "Baroque" and a["solo"]
                       and "keyboard" in a["instrument_families"] for a in index.attributes])
  assert 0 < few_mask.sum() < 150
  got = chunked.by_text(queries[:2], 150, filters=few)
  assert got.rows.shape == (2, few_mask.sum())
  assert set(got.rows[0]) == set(np.flatnonzero(few_mask))
  _assert_exact_top_k(got, queries[:2], index.embeddings, few_mask.sum(), few_mask)
  nothing = chunked.by_text(queries[:2], 5, filters=few, allowed=~few_mask)
  assert nothing.ids == [[], []] and nothing.rows.shape == (2, 0)


def test_by_track_leaves_the_query_track_out(random_library, chunked):
  index, _ = random_library
  embeddings = index.embeddings.copy()
  embeddings[700] = embeddings[5]  # a duplicate of track 5: found first, at score 1
  searcher = search.Searcher(_library(embeddings), chunk_rows=128)
  got = searcher.by_track(["track0005", "track0990"], 10)
  rows = np.array([5, 990])
  _assert_exact_top_k(got, embeddings[rows], embeddings, 10, exclude=rows)
  assert got.ids[0][0] == "track0700" and "track0005" not in got.ids[0]
  # With a filter that leaves only the track itself and one more.
  only = np.zeros(len(index), bool)
  only[[5, 6]] = True
  got = chunked.by_track("track0005", 10, allowed=only)
  assert got.ids == [["track0006"]] and got.rows[0].tolist() == [6, -1]  # k = 2 allowed
  assert got.scores[0, 1] == -np.inf


def test_errors_name_the_bad_attribute_value_or_track(chunked):
  with pytest.raises(ValueError, match=r"unknown attribute 'genre'.*instrument_families, "
                                       r"solo, style"):
    chunked.by_text(np.ones((1, 32)), 5, filters={"genre": "jazz"})
  with pytest.raises(ValueError, match=r"style='Barroque'.*known values: \"Baroque\", "
                                       r"\"Classical\", \"Romantic\""):
    chunked.by_text(np.ones((1, 32)), 5, filters={"style": "Barroque"})
  with pytest.raises(ValueError, match=r"instrument_families='kazoo'"):
    chunked.by_text(np.ones((1, 32)), 5, filters={"instrument_families": ["woodwind", "kazoo"]})
  with pytest.raises(KeyError, match="'nope'"):
    chunked.by_track(["track0001", "nope"])
  with pytest.raises(ValueError, match="queries are 16-d; the index is 32-d"):
    chunked.by_text(np.ones((1, 16)))


@pytest.fixture(scope="module")
def clustered():
  """4000 tracks around 40 centres, and 200 queries near tracks."""
  rng = np.random.default_rng(3)
  centres = _normalised(rng, 40, 32)
  points = centres[rng.integers(0, 40, 4000)] + 0.35 * _normalised(rng, 4000, 32)
  points /= np.linalg.norm(points, axis=1, keepdims=True)
  queries = points[rng.integers(0, 4000, 200)] + 0.2 * _normalised(rng, 200, 32)
  index = _library(points, seed=4)
  return index, queries / np.linalg.norm(queries, axis=1, keepdims=True)


def _recall(got_rows, exact_rows):
  return np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got_rows, exact_rows)])


@pytest.fixture
def one_faiss_thread():
  # Tiny indexes: OpenMP's start-up costs more than it saves, and on a busy
  # machine its spinning threads make a 4000-row build take seconds.
  import faiss  # pylint: disable=g-import-not-at-top  (faiss-cpu: requirements.txt)
  threads = faiss.omp_get_max_threads()
  faiss.omp_set_num_threads(1)
  yield
  faiss.omp_set_num_threads(threads)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_against_exact(clustered, kind, tmp_path, one_faiss_thread):
  index, queries = clustered
  exact = search.Searcher(index)
  approx = search.ApproximateIndex.build(index, kind, hnsw_m=16, ef_construction=40, nlist=64)
  approx.ef_search, approx.nprobe = 16, 2
  searcher = search.Searcher(index, approx)
  truth = exact.by_text(queries, 10)
  got = searcher.by_text(queries, 10)
  # Measured 0.994 (HNSW, efSearch 16) and 0.977 (IVF, 2 of 64 cells); filtered
  # through the selector (search widened by 1/kept fraction) 0.9995 and 1.0.
  assert _recall(got.rows, truth.rows) > 0.95
  assert (got.rows >= 0).all()
  np.testing.assert_allclose(got.scores[:, 0], truth.scores[:, 0], atol=1e-5)
  # Filtered, through faiss's selector and through the exact subset search.
  filters = {"style": "Baroque"}
  mask = searcher.filter.mask(filters)
  truth = exact.by_text(queries, 10, filters=filters)
  for exact_below in (0, len(index)):
    approx.exact_below = exact_below
    got = searcher.by_text(queries, 10, filters=filters)
    assert mask[got.rows].all()
    assert _recall(got.rows, truth.rows) > (0.95 if exact_below == 0 else 0.999)
  got = searcher.by_track(index.ids[:50], 10, filters=filters)  # the exact subset search
  _assert_exact_top_k(got, index.embeddings[:50], index.embeddings, 10, mask,
                      exclude=np.arange(50))
  approx.exact_below = 0
  got = searcher.by_track(index.ids[:50], 10, filters=filters)
  assert not (got.rows == np.arange(50)[:, None]).any() and mask[got.rows].all()
  # Saved and loaded: the same answers; another library is refused.
  loaded = search.ApproximateIndex.load(approx.save(str(tmp_path / kind)), index)
  loaded.ef_search, loaded.nprobe = approx.ef_search, approx.nprobe
  np.testing.assert_array_equal(search.Searcher(index, loaded).by_text(queries, 10).rows,
                                searcher.by_text(queries, 10).rows)
  other = _library(index.embeddings[::-1].copy())
  with pytest.raises(ValueError, match="built for another library"):
    search.ApproximateIndex.load(str(tmp_path / f"{kind}.npz"), other)


# ------------------------------------------------------------------ with a trained model


def _tone(seconds, freq, rate=22_050):
  t = np.arange(int(seconds * rate)) / rate
  return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


class _Counting:
  """The real model, counting the recordings it embeds."""

  def __init__(self, model):
    self.wrapped, self.embedded = model, 0

  def __getattr__(self, name):
    return getattr(self.wrapped, name)

  def embed_audio(self, waveforms, sample_rate):
    self.embedded += len(waveforms)
    return self.wrapped.embed_audio(waveforms, sample_rate)


@pytest.fixture(scope="module")
def model(trained_workdir):
  return inference.load(trained_workdir, batch_size=4)


def test_update_embeds_only_new_and_changed_files(model, tmp_path):
  folder = tmp_path / "music"
  (folder / "sub").mkdir(parents=True)
  soundfile.write(folder / "a.wav", _tone(3.0, 220), 22_050)
  soundfile.write(folder / "sub" / "b.flac", _tone(4.0, 330), 22_050)
  soundfile.write(folder / "gone.wav", _tone(2.0, 660), 22_050)
  counting = _Counting(model)
  first, skipped = inference.index_folder(counting, str(folder), progress=False)
  assert counting.embedded == 3 and not skipped
  # One new file, one rewritten (other size), one deleted, one unreadable.
  soundfile.write(folder / "sub" / "c.wav", _tone(5.0, 440), 22_050)
  soundfile.write(folder / "a.wav", _tone(6.0, 550), 22_050)
  (folder / "gone.wav").unlink()
  (folder / "broken.wav").write_bytes(b"not audio")
  counting.embedded = 0
  updated, report = inference.update_index(counting, first, str(folder), progress=False)
  assert counting.embedded == 2
  assert report.new == ["sub/c.wav"] and report.changed == ["a.wav"]
  assert report.unchanged == 1 and report.missing == ["gone.wav"] and not report.removed
  assert [os.path.basename(p) for p, _ in report.skipped] == ["broken.wav"]
  assert updated.ids == ["a.wav", "gone.wav", "sub/b.flac", "sub/c.wav"]
  # Every embedding equals a fresh index of the folder as it now is.
  fresh, _ = inference.index_folder(model, str(folder), progress=False)
  by_id = dict(zip(fresh.ids, fresh.embeddings))
  for record_id, embedding, attributes in zip(updated.ids, updated.embeddings,
                                              updated.attributes):
    if record_id != "gone.wav":
      np.testing.assert_allclose(embedding, by_id[record_id], atol=1e-5)
      assert attributes == fresh.attributes[fresh.ids.index(record_id)]
  np.testing.assert_array_equal(updated.embeddings[1], first.embeddings[1])
  # Nothing changed since: nothing embedded; the deleted file can be dropped.
  counting.embedded = 0
  again, report = inference.update_index(counting, updated, str(folder), progress=False,
                                         remove_missing=True)
  assert counting.embedded == 0 and report.unchanged == 3 and report.removed == ["gone.wav"]
  assert again.ids == ["a.wav", "sub/b.flac", "sub/c.wav"]
  with pytest.raises(ValueError, match="checkpoint step 999"):
    inference.update_index(model, library_index.LibraryIndex(
        again.ids, again.embeddings, again.attributes, {"step": 999}), str(folder))


def test_text_and_audio_file_queries_through_the_model(model, tmp_path):
  rng = np.random.default_rng(5)
  index = _library(_normalised(rng, 50, 128))
  searcher = search.Searcher(index)
  texts = ["calm baroque flute", "a fast jig"]
  np.testing.assert_array_equal(searcher.by_text(texts, 5, model=model).rows,
                                searcher.by_text(model.embed_text(texts), 5).rows)
  soundfile.write(tmp_path / "q.wav", _tone(3.0, 300), 22_050, subtype="FLOAT")  # lossless
  from_file = searcher.by_audio([str(tmp_path / "q.wav")], 5, model=model)
  from_waveform = searcher.by_audio([_tone(3.0, 300)], 5, model=model, sample_rate=22_050)
  query = model.embed_audio([_tone(3.0, 300)], 22_050)
  _assert_exact_top_k(from_file, query, index.embeddings, 5)
  np.testing.assert_array_equal(from_waveform.rows, from_file.rows)


def test_embed_launcher_updates_an_index(model, trained_workdir, tmp_path):
  folder = tmp_path / "music"
  folder.mkdir()
  soundfile.write(folder / "a.wav", _tone(3.0, 220), 22_050)
  first, _ = inference.index_folder(model, str(folder), progress=False)
  first.meta.update(workdir=os.path.abspath(trained_workdir))
  path = first.save(str(tmp_path / "library.npz"))
  soundfile.write(folder / "b.wav", _tone(4.0, 330), 22_050, subtype="FLOAT")
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  out = subprocess.run(
      [sys.executable, "-m", "launch.embed", f"--workdir={trained_workdir}",
       f"--folder={folder}", f"--update={path}", f"--output={path}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "1 new and 0 changed files embedded, 1 unchanged kept" in out.stdout
  updated = library_index.load(path)
  assert updated.ids == ["a.wav", "b.wav"]
  np.testing.assert_array_equal(updated.embeddings[0], first.embeddings[0])
  np.testing.assert_allclose(updated.embeddings[1],
                             model.embed_audio([_tone(4.0, 330)], 22_050)[0], atol=1e-5)
