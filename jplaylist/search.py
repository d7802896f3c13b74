"""Search on a library index: text -> tracks, track or audio -> similar tracks.

Issue 11, deliverable 2. A `Searcher` over a `library_index.LibraryIndex`
answers three kinds of query with the same inner-product ranking of
L2-normalised embeddings (MuLan's shared space, so a cosine):

  searcher = search.Searcher(library_index.load("workdirs/demo/library.npz"))
  searcher.by_text(["calm baroque flute"], k=10, model=model)   # text -> tracks
  searcher.by_track(["train/bach_0001_r0"], k=10)               # track -> similar tracks
  searcher.by_audio(["/music/new.flac"], k=10, model=model)     # audio -> similar tracks
  searcher.by_text(text_embeddings, k=10, filters={"style": "Baroque",
                                                    "instrument_families": ["woodwind"]})

Filters keep tracks whose attribute equals one of the given values (for a
list-valued attribute such as `instrument_families`: holds one of them);
several attributes must all match. The filter is a mask applied before the
top-k, so a filtered query returns k matching tracks whenever k exist.

Two backends answer `search(queries, k, allowed, exclude)`:
- `ExactBackend` (default): the library on the JAX device in chunks of
  `chunk_rows`, a jitted `[Q, d] @ [d, C]` per chunk and `lax.top_k`, merged
  across chunks, so the `[Q, N]` score matrix is never held whole; a million
  128-d tracks is 512 MB on device. Equal scores rank by row, as a stable
  numpy sort would.
- `ApproximateIndex`: a faiss HNSW or IVF-Flat inner-product index for
  larger libraries (faiss-cpu is imported only here), with build/save/load;
  filters go through faiss's IDSelector, or, when a filter leaves few rows,
  an exact search over those (graph and cluster searches lose recall when
  most of their neighbours are filtered out). Recall@10 against the exact
  backend and queries/s: BENCHMARKS.md (`bench/search.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jplaylist import library_index as library_index_lib

QUERY_BUCKETS = (8, 64, 256)  # queries are padded to one of these: few compiled programs


@dataclasses.dataclass(frozen=True)
class Results:
  """Top-k of Q queries.

  Attributes:
    ids: Q lists of track ids, best first (empty slots left out).
    scores: [Q, k] float32 inner products; -inf marks an empty slot (fewer
      than k tracks passed the filters).
    rows: [Q, k] int64 rows of the library index; -1 marks an empty slot.
  """
  ids: list[list[str]]
  scores: np.ndarray
  rows: np.ndarray


# --------------------------------------------------------------------------- filters


def _key(value: Any) -> str:
  # JSON text as the key: unhashable values work, and true != 1 as in the file.
  return json.dumps(value, sort_keys=True)


class AttributeFilter:
  """Turns `{attribute: value or [values]}` into a row mask of one index."""

  def __init__(self, attributes: Sequence[Mapping[str, Any]]):
    self._attributes = attributes
    self._tables: dict[str, dict[str, np.ndarray]] = {}
    self._names = sorted({name for a in attributes for name in a})

  def _table(self, name: str) -> dict[str, np.ndarray]:
    """{value key: rows holding it} for one attribute, built on first use."""
    if name not in self._tables:
      rows: dict[str, list[int]] = {}
      for row, attributes in enumerate(self._attributes):
        if name in attributes:
          value = attributes[name]
          for item in (value if isinstance(value, list) else [value]):
            rows.setdefault(_key(item), []).append(row)
      self._tables[name] = {k: np.asarray(v, np.int64) for k, v in rows.items()}
    return self._tables[name]

  def mask(self, filters: Mapping[str, Any]) -> np.ndarray:
    """[N] bool: the rows that match every filter.

    Raises:
      ValueError: naming an attribute no track has, or a value no track holds.
    """
    allowed = np.ones(len(self._attributes), bool)
    for name, wanted in filters.items():
      if name not in self._names:
        raise ValueError(f"unknown attribute {name!r} in filters; the index has "
                         f"{', '.join(self._names) or 'no attributes'}")
      table = self._table(name)
      values = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
      if not values:
        raise ValueError(f"filter {name!r}: no values given")
      matching = np.zeros(len(self._attributes), bool)
      for value in values:
        if _key(value) not in table:
          known = sorted(table)
          shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20
                                           else "")
          raise ValueError(f"filter {name}={value!r}: no track has this value; "
                           f"known values: {shown}")
        matching[table[_key(value)]] = True
      allowed &= matching
    return allowed


# --------------------------------------------------------------------------- exact


@functools.partial(jax.jit, static_argnames=("k",))
def _chunked_top_k(queries, library, allowed, exclude, *, k):
  """Exact top-k over a chunked library.

  Args:
    queries: [Q, d] float32.
    library: [num_chunks, C, d] float32 (padding rows are not allowed).
    allowed: [num_chunks, C] bool.
    exclude: [Q] int32, one row per query left out (-1: none).
    k: results per query, at most num_chunks * C.

  Returns:
    ([Q, k] scores, -inf where empty; [Q, k] int32 rows, -1 where empty).
  """
  num_chunks, chunk_rows, _ = library.shape
  per_chunk = min(k, chunk_rows)

  def body(i, carry):
    best_scores, best_rows = carry
    scores = jnp.dot(queries, library[i].T, precision=jax.lax.Precision.HIGHEST)
    rows = i * chunk_rows + jnp.arange(chunk_rows, dtype=jnp.int32)
    keep = allowed[i][None, :] & (rows[None, :] != exclude[:, None])
    scores, picked = jax.lax.top_k(jnp.where(keep, scores, -jnp.inf), per_chunk)
    # The running best (lower rows) comes first: top_k keeps the lower
    # position of equal scores, so ties rank by row across chunks too.
    merged_scores = jnp.concatenate([best_scores, scores], axis=1)
    merged_rows = jnp.concatenate([best_rows, rows[picked]], axis=1)
    best_scores, order = jax.lax.top_k(merged_scores, k)
    return best_scores, jnp.take_along_axis(merged_rows, order, axis=1)

  init = (jnp.full((queries.shape[0], k), -jnp.inf, jnp.float32),
          jnp.full((queries.shape[0], k), -1, jnp.int32))
  scores, rows = jax.lax.fori_loop(0, num_chunks, body, init)
  return scores, jnp.where(jnp.isneginf(scores), -1, rows)


class ExactBackend:
  """Exact inner-product search on the default JAX device."""

  def __init__(self, embeddings: np.ndarray, *, chunk_rows: int = 65_536):
    """Puts the library on device.

    Args:
      embeddings: [N, d] float32 library embeddings.
      chunk_rows: library rows scored per step; a [256, chunk_rows] f32 score
        block is what the device holds at once besides the library.
    """
    num_rows, dim = embeddings.shape
    chunk_rows = int(min(chunk_rows, max(8, -(-num_rows // 8) * 8)))
    num_chunks = max(1, -(-num_rows // chunk_rows))
    padded = np.zeros((num_chunks * chunk_rows, dim), np.float32)
    padded[:num_rows] = embeddings
    self.num_rows, self.chunk_rows = num_rows, chunk_rows
    self._library = jax.device_put(padded.reshape(num_chunks, chunk_rows, dim))
    self._all = self._put_mask(np.ones(num_rows, bool))

  def _put_mask(self, allowed: np.ndarray):
    padded = np.zeros(self._library.shape[0] * self.chunk_rows, bool)
    padded[:self.num_rows] = allowed
    return jax.device_put(padded.reshape(self._library.shape[:2]))

  def _bucket(self, k: int) -> int:
    """k rounded up to a power of two (at least 16): few compiled programs."""
    return min(max(16, 1 << (k - 1).bit_length()), self._library.shape[0] * self.chunk_rows)

  def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
             exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """([Q, k] scores, [Q, k] rows) of the best allowed rows (k <= N)."""
    mask = self._all if allowed is None else self._put_mask(allowed)
    exclude = np.full(len(queries), -1, np.int32) if exclude is None else exclude
    scores, rows = [], []
    for start in range(0, len(queries), QUERY_BUCKETS[-1]):
      block = queries[start:start + QUERY_BUCKETS[-1]]
      bucket = next(b for b in QUERY_BUCKETS if b >= len(block))
      padded = np.zeros((bucket, queries.shape[1]), np.float32)
      padded[:len(block)] = block
      padded_exclude = np.full(bucket, -1, np.int32)
      padded_exclude[:len(block)] = exclude[start:start + len(block)]
      s, r = _chunked_top_k(padded, self._library, mask, padded_exclude, k=self._bucket(k))
      scores.append(np.asarray(s)[:len(block), :k])
      rows.append(np.asarray(r)[:len(block), :k])
    return np.concatenate(scores), np.concatenate(rows).astype(np.int64)


def _exact_subset(embeddings, queries, k, allowed, exclude):
  """Exact top-k on the host over the allowed rows: ([Q, k] scores, [Q, k] rows)."""
  candidates = np.flatnonzero(allowed)
  subset = embeddings[candidates]
  k = min(k, len(candidates))
  top_scores, top_rows = [], []
  for start in range(0, len(queries), 256):  # a [256, |subset|] score block at a time
    scores = queries[start:start + 256] @ subset.T
    scores[candidates[None, :] == exclude[start:start + 256, None]] = -np.inf
    best = np.sort(np.argpartition(-scores, k - 1, axis=1)[:, :k], axis=1)
    order = np.take_along_axis(best, np.argsort(
        -np.take_along_axis(scores, best, 1), axis=1, kind="stable"), 1)
    top_scores.append(np.take_along_axis(scores, order, 1).astype(np.float32))
    top_rows.append(candidates[order])
  top = np.concatenate(top_scores)
  return top, np.where(np.isneginf(top), -1, np.concatenate(top_rows))


# --------------------------------------------------------------------------- approximate


def _faiss():
  try:
    import faiss  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("approximate search needs faiss-cpu (pip install faiss-cpu==1.15.1)"
                      ) from e
  return faiss


def library_digest(index: library_index_lib.LibraryIndex) -> str:
  """A digest of ids and embeddings: an approximate index fits one library."""
  digest = hashlib.sha256()
  digest.update("\n".join(index.ids).encode())
  digest.update(np.ascontiguousarray(index.embeddings, np.float32).tobytes())
  return digest.hexdigest()[:16]


class ApproximateIndex:
  """A faiss inner-product index (HNSW or IVF-Flat) of one library.

  Attributes:
    ef_search: HNSW candidate list size at query time (recall vs speed).
    nprobe: IVF clusters visited per query (recall vs speed).
    exact_below: a filter leaving at most this many rows is searched
      exactly over those rows instead; a filter keeping a fraction f of a
      larger library widens ef_search or nprobe by 1/f. Recall still falls
      when the filter removes the query's own neighbourhood (BENCHMARKS.md).
  """

  def __init__(self, faiss_index, meta: dict[str, Any]):
    self.faiss_index, self.meta = faiss_index, meta
    self.num_rows = int(meta["num_rows"])
    self.ef_search, self.nprobe, self.exact_below = 64, 16, 100_000
    self._embeddings: np.ndarray | None = None

  @classmethod
  def build(cls, index: library_index_lib.LibraryIndex, kind: str = "hnsw", *,
            hnsw_m: int = 32, ef_construction: int = 80, nlist: int | None = None,
            train_rows: int | None = None, seed: int = 0) -> "ApproximateIndex":
    """Builds an index of a library's embeddings.

    Args:
      index: the library.
      kind: "hnsw" (a graph: no training, memory ~ N * (d + 2 * hnsw_m) * 4
        bytes) or "ivf" (k-means cells, nlist of them: default 4 * sqrt(N)).
      hnsw_m, ef_construction: HNSW links per node and build-time beam.
      nlist, train_rows, seed: IVF cells, k-means sample size (default 50
        per cell; faiss asks for at least 39) and seed.
    """
    faiss = _faiss()
    embeddings = np.ascontiguousarray(index.embeddings, np.float32)
    num_rows, dim = embeddings.shape
    if kind == "hnsw":
      built = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
      built.hnsw.efConstruction = ef_construction
      params = {"hnsw_m": hnsw_m, "ef_construction": ef_construction}
    elif kind == "ivf":
      nlist = nlist or max(1, int(4 * np.sqrt(num_rows)))
      built = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                                 faiss.METRIC_INNER_PRODUCT)
      built.cp.seed = seed
      train_rows = min(num_rows, train_rows or 50 * nlist)
      sample = np.random.default_rng(seed).permutation(num_rows)[:train_rows]
      built.train(embeddings[np.sort(sample)])
      params = {"nlist": nlist, "train_rows": int(len(sample)), "seed": seed}
    else:
      raise ValueError(f"unknown approximate index kind {kind!r}; use 'hnsw' or 'ivf'")
    built.add(embeddings)
    approx = cls(built, {"kind": kind, "num_rows": num_rows, "dim": dim,
                         "library": library_digest(index), **params})
    approx._embeddings = embeddings
    return approx

  def save(self, path: str) -> str:
    """Writes the index and its metadata to one .npz file."""
    np.savez(path, faiss=_faiss().serialize_index(self.faiss_index),
             meta=np.asarray(json.dumps(self.meta, sort_keys=True)))
    return path if path.endswith(".npz") else path + ".npz"

  @classmethod
  def load(cls, path: str, index: library_index_lib.LibraryIndex) -> "ApproximateIndex":
    """Reads an index saved by `save`, checking it was built for `index`."""
    with np.load(path, allow_pickle=False) as data:
      meta = json.loads(str(data["meta"]))
      faiss_index = _faiss().deserialize_index(data["faiss"])
    if meta["num_rows"] != len(index) or meta["library"] != library_digest(index):
      raise ValueError(f"{path} was built for another library ({meta['num_rows']} rows, "
                       f"digest {meta['library']}); this one has {len(index)} rows, digest "
                       f"{library_digest(index)}: rebuild it with ApproximateIndex.build")
    approx = cls(faiss_index, meta)
    approx._embeddings = np.ascontiguousarray(index.embeddings, np.float32)
    return approx

  def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
             exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """([Q, k] scores, [Q, k] rows), approximately the best allowed rows."""
    faiss = _faiss()
    queries = np.ascontiguousarray(queries, np.float32)
    exclude = np.full(len(queries), -1, np.int64) if exclude is None else exclude
    if allowed is not None and allowed.sum() <= self.exact_below:
      return _exact_subset(self._embeddings, queries, k, allowed, exclude)
    keep_alive = []  # the selector reads this bitmap during the search
    selector, breadth = None, 1.0
    if allowed is not None:
      keep_alive.append(np.packbits(allowed, bitorder="little"))
      selector = faiss.IDSelectorBitmap(self.num_rows, faiss.swig_ptr(keep_alive[0]))
      # A filter keeping a fraction f of the tracks leaves about f of each
      # probed cell or visited node a candidate: search 1/f as broadly.
      breadth = self.num_rows / max(1, int(allowed.sum()))
    if self.meta["kind"] == "hnsw":
      params = faiss.SearchParametersHNSW(
          efSearch=int(np.ceil(max(self.ef_search, k + 1) * breadth)), sel=selector)
    else:
      params = faiss.SearchParametersIVF(
          nprobe=min(self.meta["nlist"], int(np.ceil(self.nprobe * breadth))), sel=selector)
    fetch = min(k + 1, self.num_rows)  # one more, in case the excluded row is found
    scores, rows = self.faiss_index.search(queries, fetch, params=params)
    rows = np.where(rows == exclude[:, None], -1, rows)
    scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
    order = np.argsort(rows < 0, axis=1, kind="stable")[:, :k]  # filled slots first
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


# --------------------------------------------------------------------------- searcher


class Searcher:
  """Text, track and audio queries on one library index."""

  def __init__(self, index: library_index_lib.LibraryIndex, backend=None, *,
               chunk_rows: int = 65_536):
    """Args:
      index: the library (ids, [N, d] embeddings, attributes).
      backend: an `ApproximateIndex` of it; None for `ExactBackend`.
      chunk_rows: library rows per step of the exact backend.
    """
    self.index = index
    self.backend = backend or ExactBackend(index.embeddings, chunk_rows=chunk_rows)
    self.filter = AttributeFilter(index.attributes)
    self._rows = {track_id: row for row, track_id in enumerate(index.ids)}

  def by_embedding(self, queries: np.ndarray, k: int = 10, *,
                   filters: Mapping[str, Any] | None = None,
                   allowed: np.ndarray | None = None,
                   exclude: np.ndarray | None = None) -> Results:
    """The k tracks of highest inner product with each query.

    Args:
      queries: [Q, d] query embeddings (text or audio), L2-normalised.
      k: results per query.
      filters: `{attribute: value or [values]}`; see `AttributeFilter`.
      allowed: [N] bool, rows that may be returned (and-ed with filters).
      exclude: [Q] int, a row to leave out per query (-1: none).
    """
    queries = np.atleast_2d(np.asarray(queries, np.float32))
    if queries.shape[1] != self.index.embeddings.shape[1]:
      raise ValueError(f"queries are {queries.shape[1]}-d; the index is "
                       f"{self.index.embeddings.shape[1]}-d")
    if k < 1:
      raise ValueError(f"k must be positive, got {k}")
    if allowed is not None:
      allowed = np.asarray(allowed, bool)
      if allowed.shape != (len(self.index),):
        raise ValueError(f"allowed has shape {allowed.shape}; the index has "
                         f"{len(self.index)} rows")
    if filters:
      mask = self.filter.mask(filters)
      allowed = mask if allowed is None else (allowed & mask)
    available = len(self.index) if allowed is None else int(allowed.sum())
    k = min(k, available)
    if not k:  # an empty library, or a filter nothing passes
      return Results([[] for _ in queries], np.zeros((len(queries), 0), np.float32),
                     np.zeros((len(queries), 0), np.int64))
    scores, rows = self.backend.search(queries, k, allowed, exclude)
    ids = [[self.index.ids[r] for r in query_rows if r >= 0] for query_rows in rows]
    return Results(ids=ids, scores=scores, rows=rows)

  def by_text(self, queries, k: int = 10, *, model=None, **options) -> Results:
    """Text -> tracks: [Q, d] text embeddings, or Q strings embedded by `model`
    (an `inference.Model`). Options as in `by_embedding`."""
    if model is not None:
      queries = model.embed_text(list(queries))
    return self.by_embedding(queries, k, **options)

  def by_audio(self, queries, k: int = 10, *, model=None, sample_rate: int | None = None,
               **options) -> Results:
    """Audio -> similar tracks.

    Args:
      queries: [Q, d] audio embeddings; with `model`, Q audio file paths or Q
        mono waveforms at `sample_rate`.
      k: results per query.
      model: an `inference.Model` to embed paths or waveforms.
      sample_rate: the waveforms' rate, Hz.
      **options: as in `by_embedding`.
    """
    if model is not None:
      queries = list(queries)
      if all(isinstance(q, str) for q in queries):
        from jplaylist.data import audio_io  # pylint: disable=g-import-not-at-top
        decoded = [audio_io.decode(path) for path in queries]
        queries = np.concatenate([model.embed_audio([samples.mean(axis=1)], rate)
                                  for samples, rate in decoded])
      elif sample_rate is None:
        raise ValueError("by_audio: give sample_rate with waveforms")
      else:
        queries = model.embed_audio(queries, sample_rate)
    return self.by_embedding(queries, k, **options)

  def by_track(self, track_ids: str | Sequence[str], k: int = 10, **options) -> Results:
    """Track -> similar tracks of the library, the query track left out.

    Args:
      track_ids: one id or Q ids of the index.
      k: results per query.
      **options: as in `by_embedding` (filters, allowed).
    """
    track_ids = [track_ids] if isinstance(track_ids, str) else list(track_ids)
    unknown = [t for t in track_ids if t not in self._rows]
    if unknown:
      raise KeyError(f"track ids not in the index: {', '.join(map(repr, unknown[:10]))}"
                     + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
    rows = np.asarray([self._rows[t] for t in track_ids], np.int64)
    return self.by_embedding(self.index.embeddings[rows], k, exclude=rows, **options)
