r"""Library search: exact JAX top-k against faiss, and approximate recall@10.

  python -m bench.search                                  # 1,000,000 x 128, 1000 queries
  python -m bench.search --num_tracks=200000 --kinds=ivf --nprobe=4,16
  python -m bench.search --threads=1                      # faiss on one core

A synthetic library of --num_tracks L2-normalised --dim-d embeddings around
--num_clusters centres (each track: its centre plus Gaussian noise of norm
about --spread, normalised), and --num_queries queries drawn the same way
(not library tracks). Searched the way `jplaylist.search.Searcher` does:

- exact, JAX (`ExactBackend`): the library on the default device in
  --chunk_rows chunks, one jitted program per 256-query batch; the first
  call's time includes compilation, the best of --repeats later passes over
  all queries is the steady state; also the median latency of one query;
- exact, faiss `IndexFlatIP` (BLAS sgemm and a heap): the reference exact
  search of the library the approximate indexes come from, side by side;
- approximate (`ApproximateIndex`): IVF-Flat (--nlist cells, k-means on 50
  tracks a cell) and HNSW (--hnsw_m links, --ef_construction), build time,
  then queries/s and recall@10 against the exact JAX top-10 for each
  --nprobe / --ef_search;
- filtered: masks keeping the tracks of every fourth cluster (so most
  queries' own neighbourhood is filtered out) or a random 25% of tracks,
  exact and through faiss's IDSelector with the search widened 4x (the
  exact-subset path for small filtered sets is off here), at the last
  --nprobe / --ef_search.

All queries go in one call per setting (faiss parallelises over queries on
--threads OpenMP threads). Figures in BENCHMARKS.md.
"""

import os
import time

from absl import app
from absl import flags
import faiss
import jax
import numpy as np

from jplaylist import library_index
from jplaylist import search

_NUM_TRACKS = flags.DEFINE_integer("num_tracks", 1_000_000, "Library size N.")
_DIM = flags.DEFINE_integer("dim", 128, "Embedding dimension d.")
_NUM_CLUSTERS = flags.DEFINE_integer("num_clusters", 1000, "Cluster centres of the library.")
_SPREAD = flags.DEFINE_float("spread", 0.6, "Noise norm around a centre (before normalising).")
_NUM_QUERIES = flags.DEFINE_integer("num_queries", 1000, "Queries per measurement.")
_K = flags.DEFINE_integer("k", 10, "Results per query (recall@k).")
_CHUNK_ROWS = flags.DEFINE_integer("chunk_rows", 65_536, "Library rows per exact-search step.")
_KINDS = flags.DEFINE_list("kinds", ["ivf", "hnsw"], "Approximate indexes to build.")
_NLIST = flags.DEFINE_integer("nlist", None, "IVF cells (default 4 sqrt(N)).")
_NPROBE = flags.DEFINE_list("nprobe", ["8", "32", "128"], "IVF cells visited per query.")
_HNSW_M = flags.DEFINE_integer("hnsw_m", 32, "HNSW links per node.")
_EF_CONSTRUCTION = flags.DEFINE_integer("ef_construction", 80, "HNSW build beam.")
_EF_SEARCH = flags.DEFINE_list("ef_search", ["16", "64", "256"], "HNSW search beam.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed passes (best kept).")
_THREADS = flags.DEFINE_integer("threads", None, "faiss OpenMP threads (default: all cores).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of library and queries.")


def _clustered(rng, centres, count, spread):
  """[count, d] unit vectors around random centres, and each one's centre."""
  labels = rng.integers(0, len(centres), count)
  points = np.empty((count, centres.shape[1]), np.float32)
  for start in range(0, count, 100_000):  # in blocks: float64 noise for 1M rows is 1 GB
    part = slice(start, start + 100_000)
    noise = rng.standard_normal(points[part].shape, np.float32)
    noise *= spread / np.sqrt(centres.shape[1])
    points[part] = centres[labels[part]] + noise
  points /= np.linalg.norm(points, axis=1, keepdims=True)
  return points, labels


def _best(fn, repeats):
  best, result = float("inf"), None
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    best = min(best, time.perf_counter() - start)
  return best, result


def _recall(got_rows, exact_rows):
  return float(np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got_rows, exact_rows)]))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _THREADS.value:
    faiss.omp_set_num_threads(_THREADS.value)
  rng = np.random.default_rng(_SEED.value)
  num_tracks, dim, k = _NUM_TRACKS.value, _DIM.value, _K.value
  centres = rng.standard_normal((_NUM_CLUSTERS.value, dim)).astype(np.float32)
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  embeddings, labels = _clustered(rng, centres, num_tracks, _SPREAD.value)
  queries, _ = _clustered(rng, centres, _NUM_QUERIES.value, _SPREAD.value)
  index = library_index.LibraryIndex(ids=[str(i) for i in range(num_tracks)],
                                     embeddings=embeddings, attributes=[{}] * num_tracks,
                                     meta={})
  filters = {"25% of clusters": labels % 4 == 0,  # the query's neighbourhood often filtered out
             "25% of tracks": rng.random(num_tracks) < 0.25}
  print(f"Library: {num_tracks:,} x {dim} ({embeddings.nbytes / 2**20:.0f} MiB), "
        f"{_NUM_CLUSTERS.value} clusters, {len(queries)} queries, k={k}; device "
        f"{jax.devices()[0].device_kind}, {os.cpu_count()} cores, faiss "
        f"{faiss.__version__} on {faiss.omp_get_max_threads()} threads")
  rows = []  # (method, setting, build s, queries/s, recall@k)

  # ---------------------------------------------------------------- exact, JAX
  start = time.perf_counter()
  exact = search.Searcher(index, chunk_rows=_CHUNK_ROWS.value)
  put = time.perf_counter() - start
  start = time.perf_counter()
  exact.by_embedding(queries[:search.QUERY_BUCKETS[-1]], k)
  first = time.perf_counter() - start
  seconds, truth = _best(lambda: exact.by_embedding(queries, k), _REPEATS.value)
  latencies = []
  exact.by_embedding(queries[:1], k)  # the one-query program
  for query in queries[:20]:
    start = time.perf_counter()
    exact.by_embedding(query[None], k)
    latencies.append(time.perf_counter() - start)
  print(f"exact JAX: library to device {put:.2f} s, first 256-query call (with compile) "
        f"{first:.2f} s, one query {1e3 * np.median(latencies):.1f} ms (median of 20)")
  rows.append(("exact, JAX (chunked matmul + top_k)", f"chunk_rows={_CHUNK_ROWS.value}",
               put, len(queries) / seconds, 1.0))
  jax_qps = len(queries) / seconds
  filtered_truth = {}
  for filter_name, allowed in filters.items():
    seconds, filtered_truth[filter_name] = _best(
        lambda: exact.by_embedding(queries, k, allowed=allowed), _REPEATS.value)  # pylint: disable=cell-var-from-loop
    rows.append((f"exact, JAX, filter: {filter_name}", "", 0.0, len(queries) / seconds, 1.0))

  # ---------------------------------------------------------------- exact, faiss
  start = time.perf_counter()
  flat = faiss.IndexFlatIP(dim)
  flat.add(embeddings)
  build = time.perf_counter() - start
  seconds, (_, flat_rows) = _best(lambda: flat.search(queries, k), _REPEATS.value)
  rows.append(("exact, faiss IndexFlatIP", "", build, len(queries) / seconds,
               _recall(flat_rows, truth.rows)))
  del flat

  # ---------------------------------------------------------------- approximate
  for kind in _KINDS.value:
    start = time.perf_counter()
    approx = search.ApproximateIndex.build(index, kind, hnsw_m=_HNSW_M.value,
                                           ef_construction=_EF_CONSTRUCTION.value,
                                           nlist=_NLIST.value, seed=_SEED.value)
    build = time.perf_counter() - start
    approx.exact_below = 0  # measure faiss's own filtered search
    searcher = search.Searcher(index, approx)
    settings = _NPROBE.value if kind == "ivf" else _EF_SEARCH.value
    for setting in map(int, settings):
      if kind == "ivf":
        approx.nprobe, name = setting, f"nlist={approx.meta['nlist']}, nprobe={setting}"
      else:
        approx.ef_search, name = setting, f"M={_HNSW_M.value}, efSearch={setting}"
      seconds, got = _best(lambda: searcher.by_embedding(queries, k), _REPEATS.value)
      rows.append((f"{kind.upper()} (faiss)", name, build, len(queries) / seconds,
                   _recall(got.rows, truth.rows)))
      build = float("nan")  # printed once per index
    for filter_name, allowed in filters.items():
      seconds, got = _best(lambda: searcher.by_embedding(queries, k, allowed=allowed),  # pylint: disable=cell-var-from-loop
                           _REPEATS.value)
      assert allowed[got.rows[got.rows >= 0]].all()
      rows.append((f"{kind.upper()} (faiss), filter: {filter_name}", name, float("nan"),
                   len(queries) / seconds, _recall(got.rows, filtered_truth[filter_name].rows)))
    del approx, searcher

  print(f"\n| search | setting | build s | queries/s | vs exact JAX | recall@{k} |")
  print("|---|---|---|---|---|---|")
  for method, setting, build, qps, recall in rows:
    build_text = "" if np.isnan(build) or not build else f"{build:.1f}"
    print(f"| {method} | {setting} | {build_text} | {qps:,.0f} | {qps / jax_qps:.2f}x | "
          f"{recall:.3f} |")


if __name__ == "__main__":
  app.run(main)
