"""Next-track evaluation of sequence models: hit rate@k and nDCG@k.

Each held-out sequence s_1..s_T (T >= 2) asks for its last item s_T given the
earlier ones as context. A model scores every track of the universe (N rows);
the context's own tracks are removed from the candidates (a target that
repeats its context counts as a miss; `next_track_table` reports how many),
and the target's rank r (0-based) among the rest gives

  hit@k = [r < k],    nDCG@k = [r < k] / log2(r + 2)

(one relevant item, so the ideal DCG is 1). Ties are broken by one random
order of the tracks shared by every model, so a model that cannot tell two
tracks apart ranks them at random, and an all-equal scorer is the random
baseline. Tracks a model never saw score -inf: they rank below every known
track, in that random order.

Scorers (contexts -> [Q, N] scores):
  `cosine_scorer`      item2vec vectors, or audio embeddings (audio kNN): the
                       cosine to the mean unit vector of the last
                       `context_size` known context tracks;
  `mf_scorer`          ALS item factors; the context folded in as a new user
                       (`als.fold_in`), scores x_u . y_i;
  `popularity_scorer`  training play counts;
  `random_scorer`      independent uniform scores.

`next_track_table` gives the metrics for all targets, for warm targets, and
for cold-start targets: tracks in no training sequence, which only a content
model (the audio embedding) can rank.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from jplaylist.playlists import als

Scorer = Callable[[Sequence[np.ndarray]], np.ndarray]


def target_ranks(scores: np.ndarray, targets: np.ndarray, *, exclude: np.ndarray,
                 tie_order: np.ndarray) -> np.ndarray:
  """[Q] 0-based rank of each target among the non-excluded candidates.

  Args:
    scores: [Q, N] higher is better.
    targets: [Q] int the true next track.
    exclude: [Q, N] bool candidates removed (the context); an excluded target
      gets rank N (a miss at any k).
    tie_order: [N] int a permutation: among equal scores, lower goes first.
  """
  scores = np.asarray(scores, np.float64)
  rows = np.arange(len(targets))
  target_score = scores[rows, targets][:, None]
  target_tie = tie_order[targets][:, None]
  before = (scores > target_score) | ((scores == target_score) & (tie_order[None] < target_tie))
  ranks = np.sum(before & ~exclude, axis=1)
  return np.where(exclude[rows, targets], scores.shape[1], ranks)


def _check_k(k):
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k={k!r}: expected an integer >= 1")


def _check_context_size(context_size):
  if not isinstance(context_size, (int, np.integer)) or context_size < 0:
    raise ValueError(f"context_size={context_size!r}: expected an integer >= 0 (0: all)")


def hit_rate(ranks: np.ndarray, k: int = 10) -> float | None:
  """Share of targets ranked in the top k (None with no targets: JSON null)."""
  _check_k(k)
  return float(np.mean(np.asarray(ranks) < k)) if len(ranks) else None


def ndcg(ranks: np.ndarray, k: int = 10) -> float | None:
  """Mean nDCG@k with one relevant item per query: 1 / log2(rank + 2) in the top k
  (None with no targets)."""
  _check_k(k)
  ranks = np.asarray(ranks, np.float64)
  if not len(ranks):
    return None
  return float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)))


# ------------------------------------------------------------------ scorers


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_scorer(vectors: np.ndarray, known: np.ndarray | None = None, *,
                  context_size: int = 0) -> Scorer:
  """Cosine to the mean unit vector of the context's last known tracks.

  Args:
    vectors: [N, d] item2vec vectors or audio embeddings of the N tracks.
    known: [N] bool tracks with a vector (default all); others score -inf and
      are skipped in contexts. A context with no known track scores every
      known track 0 (random order).
    context_size: use the last this many known context tracks (0: all).
  """
  _check_context_size(context_size)
  unit = _unit(vectors)
  known = np.ones(len(unit), bool) if known is None else np.asarray(known, bool)
  if known.shape != (len(unit),):
    raise ValueError(f"known {known.shape}: expected [{len(unit)}], one per vector")

  def score(contexts):
    queries = np.zeros((len(contexts), unit.shape[1]))
    for q, context in enumerate(contexts):
      context = np.asarray(context)[known[np.asarray(context)]] if len(context) else context
      if context_size:
        context = context[-context_size:]
      if len(context):
        queries[q] = _unit(unit[context].mean(0))
    return np.where(known[None], queries @ unit.T, -np.inf)

  return score


def mf_scorer(item_factors: np.ndarray, known: np.ndarray, *, regularization: float,
              alpha: float, context_size: int = 0) -> Scorer:
  """x_u . y_i, x_u the context folded in (`als.fold_in`); unknown tracks -inf."""
  _check_context_size(context_size)
  known = np.asarray(known, bool)
  if known.shape != (len(item_factors),):
    raise ValueError(f"known {known.shape}: expected [{len(item_factors)}], one per item")

  def score(contexts):
    kept = []
    for context in contexts:
      context = np.asarray(context, np.int64)
      context = context[known[context]] if len(context) else context
      kept.append(context[-context_size:] if context_size else context)
    users = als.fold_in(item_factors, kept, regularization=regularization, alpha=alpha)
    return np.where(known[None], users @ np.asarray(item_factors).T, -np.inf)

  return score


def popularity_scorer(counts: np.ndarray) -> Scorer:
  """Training play counts, the same for every context."""
  counts = np.asarray(counts, np.float64)
  return lambda contexts: np.broadcast_to(counts, (len(contexts), len(counts)))


def random_scorer(num_tracks: int, seed: int = 0) -> Scorer:
  """Independent uniform scores per query (a fresh draw per call)."""
  rng = np.random.default_rng(seed)
  return lambda contexts: rng.random((len(contexts), num_tracks))


# ------------------------------------------------------------------ tables


def next_track_examples(sequences: Sequence[Sequence[int]], *, min_length: int = 2
                        ) -> tuple[list[np.ndarray], np.ndarray]:
  """(contexts, targets [Q]): all but the last item, and the last item."""
  kept = [np.asarray(s, np.int64) for s in sequences if len(s) >= min_length]
  return [s[:-1] for s in kept], np.asarray([s[-1] for s in kept], np.int64)


def next_track_table(test_sequences: Sequence[Sequence[int]], scorers: Mapping[str, Scorer], *,
                     num_tracks: int, cold: np.ndarray | None = None, k: int = 10,
                     seed: int = 0, block: int = 1024) -> dict:
  """Hit rate@k and nDCG@k of each scorer on held-out sequences.

  Args:
    test_sequences: sequences of track rows in [0, num_tracks).
    scorers: name -> Scorer.
    cold: [N] bool tracks in no training sequence (default none).
    k: the cut-off.
    seed: the tie-breaking order.
    block: queries scored at a time ([block, N] scores and exclusions in
      memory).

  Returns:
    {"k", "num_queries", "target_in_context", "subsets": {"all"|"warm"|"cold":
    {"count", "methods": {name: {"hit_rate", "ndcg"}}}}}.
  """
  _check_k(k)
  if block < 1:
    raise ValueError(f"block={block}: expected >= 1")
  contexts, targets = next_track_examples(test_sequences)
  cold = np.zeros(num_tracks, bool) if cold is None else np.asarray(cold, bool)
  if cold.shape != (num_tracks,):
    raise ValueError(f"cold has shape {cold.shape}: expected [num_tracks={num_tracks}]")
  rows = [targets] + contexts
  if any(len(r) and (r.min() < 0 or r.max() >= num_tracks) for r in rows):
    raise ValueError(f"test sequences hold track rows outside [0, num_tracks={num_tracks})")
  tie_order = np.random.default_rng(seed).permutation(num_tracks)

  def exclusions(start, stop):  # [stop - start, N] each query's context
    exclude = np.zeros((len(targets[start:stop]), num_tracks), bool)
    for q, context in enumerate(contexts[start:stop]):
      exclude[q, context] = True
    return exclude

  ranks = {}
  for name, scorer in scorers.items():
    parts = []
    for start in range(0, len(targets), block):
      stop = start + block
      scores = scorer(contexts[start:stop])
      parts.append(target_ranks(scores, targets[start:stop], exclude=exclusions(start, stop),
                                tie_order=tie_order))
    ranks[name] = np.concatenate(parts) if parts else np.zeros(0, np.int64)
  in_context = sum(bool(np.any(c == t)) for c, t in zip(contexts, targets))
  subsets = {"all": np.ones(len(targets), bool), "warm": ~cold[targets], "cold": cold[targets]}
  table = {"k": k, "num_queries": int(len(targets)), "target_in_context": in_context,
           "subsets": {}}
  for subset, chosen in subsets.items():
    table["subsets"][subset] = {
        "count": int(chosen.sum()),
        "methods": {name: {"hit_rate": hit_rate(r[chosen], k), "ndcg": ndcg(r[chosen], k)}
                    for name, r in ranks.items()}}
  return table


def to_markdown(table: dict) -> str:
  """The table as markdown: one row per method, columns per subset."""
  k = table["k"]
  subsets = [s for s in ("all", "warm", "cold") if table["subsets"][s]["count"]]
  header = "| method | " + " | ".join(
      f"{s} hit@{k} | {s} nDCG@{k}" for s in subsets) + " |"
  lines = [header, "|" + "---|" * (1 + 2 * len(subsets))]
  methods = list(table["subsets"]["all"]["methods"])
  for name in methods:
    cells = []
    for s in subsets:
      m = table["subsets"][s]["methods"][name]
      cells += [f"{m['hit_rate']:.3f}", f"{m['ndcg']:.3f}"]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  counts = ", ".join(f"{s}: {table['subsets'][s]['count']}" for s in subsets)
  lines.append("")
  lines.append(f"Queries ({counts}); targets repeating their context: "
               f"{table['target_in_context']}.")
  return "\n".join(lines)
