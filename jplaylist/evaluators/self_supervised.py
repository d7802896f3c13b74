"""What the self-supervised adversarial embedding learned (issue 14): the report.

`evaluate(workdir, ...)` (run by `launch.evaluate` for a run of
`config.trainer = "adversarial"`) writes `metrics.json` and `report.md` with:

  adjacency     on held-out compositions (the test split): each recording's
                two middle adjacent windows are a positive pair, its first
                window with the second window of every recording of another
                composition a negative. The score of a pair is the head's logit
                (adjacency form) or the similarity the run trained with (dssm
                form); AUC-ROC over all pairs, accuracy at logit 0 (adjacency
                form, positives and negatives weighted equally), and how often
                a window's true neighbour is the best-scored second window
                (R@1).
  prior         how close the embeddings of the split's windows are to N(0, I):
                per-dimension means and variances, and the squared maximum mean
                discrepancy (`mmd2`, unbiased, Gaussian kernel of bandwidth
                sqrt(d)) against as many samples of the prior, with a
                permutation p-value (`mmd_test`).
  probes        linear probes of the demo attributes (`linear_probe`), trained on
                the train split's recordings and scored on the test split's, on
                this embedding and, given `compare_workdir`, on a contrastive
                model's.
  by example    query by example: every recording of the test and held-out-
                timbre splits is a query, the other renditions of its
                composition (other ensemble, soundfont, tempo) the relevant
                answers; mAP and R@10 (`query_by_example`).
  travel        playlists from track A to track B (`travel.path_playlist`):
                their step distances against random orders of the same tracks;
                how far samples of the prior fall from the library's tracks.
  by humming    query by humming: each test recording's melody line sung by
                one whistle-like voice (`humming`), in tune and off key and
                tempo, searched against the same library (the test and
                held-out-timbre recordings), every rendition of the
                composition relevant; beside the contrastive model's audio
                tower on the same queries and random embeddings.

A recording's embedding is the mean of its windows' embeddings
(`track_embeddings`: consecutive windows of the trained length, at most
`max_windows` from its middle).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Sequence

import numpy as np

from jplaylist import checkpoint as checkpoint_lib
from jplaylist.data import builder
from jplaylist.evaluators import humming
from jplaylist.evaluators import linear_probe
from jplaylist.evaluators import metrics
from jplaylist.evaluators import splits as splits_lib
from jplaylist.playlists import travel

PROBE_FAMILIES = ("instrument_families", "style", "tempo_class", "mode", "mood")


# --------------------------------------------------------------- windows ----
def middle_pair(waveform: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The two adjacent windows at a recording's middle: ([2, window], lengths [2]).

  Shorter than two windows: its two halves, zero-padded (as the trainer's
  pairs are cut).
  """
  n = len(waveform)
  out = np.zeros((2, window), np.float32)
  if n >= 2 * window:
    start = (n - 2 * window) // 2
    out[0], out[1] = waveform[start:start + window], waveform[start + window:start + 2 * window]
    return out, np.array([window, window], np.int32)
  half = n // 2
  out[0, :half], out[1, :n - half] = waveform[:half], waveform[half:]
  return out, np.array([half, n - half], np.int32)


def windows_of(waveform: np.ndarray, window: int, max_windows: int
               ) -> tuple[np.ndarray, np.ndarray]:
  """Up to `max_windows` consecutive windows from the middle of a recording.

  Returns ([k, window] float32, lengths [k]); a recording shorter than one
  window is one zero-padded window.
  """
  n = len(waveform)
  count = max(1, min(max_windows, n // window))
  start = max(0, (n - count * window) // 2)
  out = np.zeros((count, window), np.float32)
  lengths = np.zeros(count, np.int32)
  for i in range(count):
    piece = waveform[start + i * window:start + (i + 1) * window]
    out[i, :len(piece)] = piece
    lengths[i] = len(piece)
  return out, lengths


def track_embeddings(embed: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     waveforms: Sequence[np.ndarray], window: int,
                     max_windows: int = 8) -> np.ndarray:
  """[N, d]: each recording's mean window embedding.

  Args:
    embed: (windows [M, window] float32, lengths [M]) -> [M, d].
  """
  pieces = [windows_of(w, window, max_windows) for w in waveforms]
  z = embed(np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces]))
  bounds = np.cumsum([0] + [len(p[0]) for p in pieces])
  return np.stack([z[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])


# ------------------------------------------------------------- adjacency ----
def adjacency_figures(score: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      first: np.ndarray, second: np.ndarray, groups: Sequence[Any],
                      has_threshold: bool) -> dict[str, float]:
  """Adjacency AUC, accuracy and R@1 of a pair score on held-out recordings.

  Args:
    score: ([P, d], [P, d]) -> [P] scores of pairs (higher: adjacent).
    first, second: [N, d] embeddings of each recording's two middle windows.
    groups: [N] composition of each recording; pairs within one composition
      are neither positives (unless i == j) nor negatives.
    has_threshold: the score is a logit (accuracy at 0 is reported).
  """
  n = len(first)
  groups = np.asarray(groups)
  i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
  scores = score(first[i.ravel()], second[j.ravel()]).reshape(n, n)
  positive = np.eye(n, dtype=bool)
  negative = groups[:, None] != groups[None, :]
  labels = np.r_[np.ones(n), np.zeros(negative.sum())]
  values = np.r_[scores[positive], scores[negative]]
  out = {"auc_roc": metrics.roc_auc(labels, values),
         "r_at_1": float(np.mean(metrics.first_relevant_rank(
             positive, np.where(positive | negative, scores, -np.inf)) == 1)),
         "pairs_positive": float(n), "pairs_negative": float(negative.sum())}
  if has_threshold:
    out["accuracy"] = float(0.5 * np.mean(scores[positive] > 0)
                            + 0.5 * np.mean(scores[negative] <= 0))
  return out


# ----------------------------------------------------------------- prior ----
def gaussian_kernel(x: np.ndarray, y: np.ndarray, bandwidth: float) -> np.ndarray:
  """exp(-|x - y|^2 / (2 bandwidth^2)), [N, M]."""
  squared = (np.sum(x * x, 1)[:, None] + np.sum(y * y, 1)[None, :] - 2.0 * x @ y.T)
  return np.exp(-np.maximum(squared, 0.0) / (2.0 * bandwidth ** 2))


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
  """Unbiased squared MMD of samples x [N, d] and y [M, d] (Gretton et al. 2012)."""
  kxx, kyy, kxy = (gaussian_kernel(x, x, bandwidth), gaussian_kernel(y, y, bandwidth),
                   gaussian_kernel(x, y, bandwidth))
  n, m = len(x), len(y)
  return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
               + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * kxy.mean())


def mmd_test(x: np.ndarray, y: np.ndarray, bandwidth: float, permutations: int = 200,
             seed: int = 0) -> tuple[float, float]:
  """(mmd2, permutation p-value): the share of relabellings of the pooled
  samples whose mmd2 is at least the observed one (the observed counted)."""
  observed = mmd2(x, y, bandwidth)
  pooled = np.concatenate([x, y])
  rng = np.random.default_rng(seed)
  kernel = gaussian_kernel(pooled, pooled, bandwidth)
  n, m = len(x), len(y)

  def from_kernel(index):
    a, b = index[:n], index[n:]
    kxx, kyy, kxy = kernel[np.ix_(a, a)], kernel[np.ix_(b, b)], kernel[np.ix_(a, b)]
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * kxy.mean())

  exceed = sum(from_kernel(rng.permutation(n + m)) >= observed for _ in range(permutations))
  return observed, float((1 + exceed) / (1 + permutations))


def prior_figures(z: np.ndarray, seed: int = 0, permutations: int = 200) -> dict[str, float]:
  """How close embeddings z [N, d] are to N(0, I) (see the module docstring)."""
  n, d = z.shape
  mean, variance = z.mean(axis=0), z.var(axis=0, ddof=1)
  prior = np.random.default_rng(seed).standard_normal((n, d))
  bandwidth = float(np.sqrt(d))
  value, p_value = mmd_test(z.astype(np.float64), prior, bandwidth, permutations, seed + 1)
  # The same statistic between two independent prior samples: its scale at
  # this N and d when the distributions agree.
  reference = mmd2(np.random.default_rng(seed + 2).standard_normal((n, d)), prior, bandwidth)
  return {"mean_abs_mean": float(np.mean(np.abs(mean))),
          "max_abs_mean": float(np.max(np.abs(mean))),
          "mean_variance": float(np.mean(variance)),
          "mean_abs_log_variance": float(np.mean(np.abs(np.log(variance)))),
          "mmd2": value, "mmd2_p_value": p_value, "mmd2_prior_vs_prior": reference}


# ------------------------------------------------------------ by example ----
def search_scores(queries: np.ndarray, library: np.ndarray, metric: str) -> np.ndarray:
  """[Q, N] scores of library items for queries: "euclidean" (negative squared
  distance) or "cosine"."""
  if metric == "cosine":
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return unit(queries) @ unit(library).T
  return -travel.squared_distances(queries, library)


def _retrieval_figures(relevant: np.ndarray, scores: np.ndarray) -> dict[str, float]:
  """mAP, R@10 and chance mAP over the queries ([Q, N] rows) with a relevant item."""
  keep = relevant.any(axis=1)
  relevant, scores = relevant[keep], scores[keep]
  aps = [metrics.average_precision(r, s) for r, s in zip(relevant, scores)]
  chance = metrics.random_average_precision(relevant.sum(axis=1), scores.shape[1])
  return {"map": float(np.mean(aps)), "r_at_10": metrics.recall_at_k(relevant, scores, 10),
          "chance_map": float(np.mean(chance)), "queries": float(keep.sum())}


def query_by_example(embeddings: np.ndarray, groups: Sequence[Any],
                     metric: str = "euclidean") -> dict[str, float]:
  """mAP and R@10 of every recording as a query for the other renditions of
  its composition (itself excluded; queries without another rendition skipped).

  metric: "euclidean" (negative squared distance) or "cosine".
  """
  groups = np.asarray(groups)
  n = len(groups)
  others = ~np.eye(n, dtype=bool)  # each query ranks the other n - 1 recordings
  relevant = (groups[:, None] == groups[None, :])[others].reshape(n, n - 1)
  scores = search_scores(embeddings, embeddings, metric)[others].reshape(n, n - 1)
  return _retrieval_figures(relevant, scores)


def query_search(queries: np.ndarray, library: np.ndarray, query_groups: Sequence[Any],
                 library_groups: Sequence[Any], metric: str = "euclidean"
                 ) -> dict[str, float]:
  """mAP and R@10 of queries [Q, d] against a library [N, d]; a library item
  is relevant to a query when their groups (compositions) are equal."""
  relevant = np.asarray(query_groups)[:, None] == np.asarray(library_groups)[None, :]
  return _retrieval_figures(relevant, search_scores(queries, library, metric))


def humming_queries(attributes: Sequence[dict], sample_rate: int,
                    settings: "humming.HumSettings", seed: int = 0) -> list[np.ndarray]:
  """One sung melody per recording (`humming.hum`), as long as the recording."""
  queries = []
  for i, a in enumerate(attributes):
    notes, beat = humming.melody_notes(a)
    sung = dataclasses.replace(settings, max_seconds=float(a["duration_s"]))
    queries.append(humming.hum(notes, beat, sample_rate, sung,
                               np.random.default_rng([seed, i])))
  return queries


def travel_figures(embeddings: np.ndarray, pairs: int = 50, length: int = 8,
                   seed: int = 0) -> dict[str, float]:
  """Smooth playlists from track A to track B (`travel.path_playlist`) for
  random (A, B) pairs: mean step distance against random orders of the same
  tracks between the same ends, and the share of those orders that are
  rougher; and how far samples of N(0, I) land from their nearest tracks,
  beside the library's own nearest-neighbour distances."""
  rng = np.random.default_rng(seed)
  ratios, rougher = [], []
  for _ in range(pairs):
    start, end = rng.choice(len(embeddings), 2, replace=False)
    playlist = travel.path_playlist(embeddings, int(start), int(end), length)
    figures = travel.smoothness(embeddings, playlist, rng)
    ratios.append(figures["ratio"])
    rougher.append(figures["share_of_orders_rougher"])
  squared = travel.squared_distances(embeddings, embeddings)
  np.fill_diagonal(squared, np.inf)
  samples = rng.standard_normal((len(embeddings), embeddings.shape[1]))
  to_samples = travel.squared_distances(samples, embeddings)
  return {"path_over_random_order": float(np.mean(ratios)),
          "share_of_orders_rougher": float(np.mean(rougher)),
          "prior_sample_nearest_distance": float(np.mean(np.sqrt(to_samples.min(1)))),
          "library_nearest_distance": float(np.mean(np.sqrt(squared.min(1))))}


# ---------------------------------------------------------------- report ----
class _ProbeModel:
  """`embed_audio(waveforms, sample_rate)` of track embeddings, for `linear_probe`."""

  def __init__(self, embed_tracks: Callable[[Sequence[np.ndarray]], np.ndarray]):
    self.embed_tracks = embed_tracks

  def embed_audio(self, waveforms, sample_rate):
    del sample_rate
    return self.embed_tracks(waveforms)


def evaluate(workdir: str, *, data_dir: str | None = None, step: int | None = None,
             output_dir: str | None = None, compare_workdir: str | None = None,
             test_split: str = "test", other_renditions_split: str = "test_heldout_timbre",
             log: Callable[[str], None] = print) -> tuple[dict[str, float], dict[str, str]]:
  """The report of an adversarial-embedding run; see the module docstring.

  Returns:
    (metrics, {"metrics": path, "report": path}).
  """
  from jplaylist.trainers import adversarial  # the trainer imports jax models

  networks, params, batch_stats, config = adversarial.restore(workdir, step)
  step = step if step is not None else checkpoint_lib.latest_step(workdir)
  data_dir = data_dir or config.input.data_dir
  path = builder.dataset_path(data_dir, config.input.dataset)
  sample_rate = builder.sample_rate_of(path)
  window = int(round(config.input.window_seconds * sample_rate))
  embed = lambda audio, lengths: adversarial.embed(networks, params, batch_stats, audio, lengths)
  embed_tracks = lambda waveforms: track_embeddings(embed, waveforms, window)
  form, metric = config.adversarial.form, config.adversarial.metric
  search_metric = "cosine" if metric == "cosine" else "euclidean"
  results: dict[str, float] = {}

  log(f"adjacency on {test_split}")
  test = splits_lib.load_split(path, test_split)
  groups = [a.get("composition", i) for a, i in zip(test.attributes, test.ids)]
  pairs = [middle_pair(w, window) for w in test.waveforms]
  z = embed(np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]))
  first, second = z[0::2], z[1::2]
  if form == "adjacency":
    score = lambda a, b: adversarial.adjacency_logits(networks, params, a, b)
  else:
    score = lambda a, b: adversarial.pair_similarities(a, b, metric, config.adversarial.scale)
  for k, v in adjacency_figures(score, first, second, groups, form == "adjacency").items():
    results[f"adjacency/{k}"] = v

  log("distance to the prior")
  for k, v in prior_figures(np.concatenate([first, second]).astype(np.float64)).items():
    results[f"prior/{k}"] = v

  log("query by example")
  tracks = embed_tracks(test.waveforms)
  track_groups = list(groups)
  try:
    other = splits_lib.load_split(path, other_renditions_split)
    tracks = np.concatenate([tracks, embed_tracks(other.waveforms)])
    track_groups += [a.get("composition", i) for a, i in zip(other.attributes, other.ids)]
  except (FileNotFoundError, KeyError, ValueError) as error:
    log(f"no split {other_renditions_split!r} ({error}); renditions of {test_split} only")
  by_example = query_by_example(tracks, track_groups, search_metric)
  for k, v in by_example.items():
    results[f"query_by_example/{k}"] = v

  log("query by humming")
  library_groups = track_groups
  try:
    hummed = {name: humming_queries(test.attributes, sample_rate, settings)
              for name, settings in (("in_tune", humming.IN_TUNE),
                                     ("off_key_and_tempo", humming.OFF_KEY_AND_TEMPO))}
  except KeyError as error:  # not a demo-corpus dataset: no scores to sing from
    log(f"query by humming needs the demo corpus's scores ({error}); skipped")
    hummed = {}
  random = np.random.default_rng(0)
  for name, waveforms in hummed.items():
    found = query_search(embed_tracks(waveforms), tracks, groups, library_groups,
                         search_metric)
    for k, v in found.items():
      results[f"query_by_humming/{name}/{k}"] = v
    dim = tracks.shape[1]
    chance = query_search(random.standard_normal((len(waveforms), dim)),
                          random.standard_normal((len(library_groups), dim)), groups,
                          library_groups)
    results[f"random/query_by_humming/{name}/map"] = chance["map"]
    results[f"random/query_by_humming/{name}/r_at_10"] = chance["r_at_10"]

  log("travel")
  for k, v in travel_figures(tracks).items():
    results[f"travel/{k}"] = v

  log("linear probes")
  probe = linear_probe.LinearProbe(path, "train", test_split, families=PROBE_FAMILIES)
  for name, value in probe.run(_ProbeModel(embed_tracks)):
    results[name] = value
  if compare_workdir:
    from jplaylist import inference
    contrastive = inference.load(compare_workdir)
    for name, value in probe.run(contrastive):
      results[f"contrastive/{name}"] = value
    tracks_c = np.concatenate([contrastive.embed_audio(test.waveforms, sample_rate)] + (
        [contrastive.embed_audio(other.waveforms, sample_rate)]
        if len(track_groups) > len(test.ids) else []))
    for k, v in query_by_example(tracks_c, track_groups, "cosine").items():
      results[f"contrastive/query_by_example/{k}"] = v
    for name, waveforms in hummed.items():
      found = query_search(contrastive.embed_audio(waveforms, sample_rate), tracks_c, groups,
                           library_groups, "cosine")
      for k, v in found.items():
        results[f"contrastive/query_by_humming/{name}/{k}"] = v
    for k, v in travel_figures(tracks_c).items():
      if k.startswith(("path", "share")):
        results[f"contrastive/travel/{k}"] = v

  output_dir = output_dir or os.path.join(workdir, "eval", f"{test_split}_step{step}")
  os.makedirs(output_dir, exist_ok=True)
  paths = {"metrics": os.path.join(output_dir, "metrics.json"),
           "report": os.path.join(output_dir, "report.md")}
  with open(paths["metrics"], "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  with open(paths["report"], "w") as f:
    f.write(report_text(results, config, workdir, step, compare_workdir))
  return results, paths


def report_text(results: dict[str, float], config, workdir: str, step: int,
                compare_workdir: str | None) -> str:
  fmt = lambda key, digits=3: ("-" if key not in results or results[key] != results[key]
                               else f"{results[key]:.{digits}f}")
  adv = config.adversarial
  lines = [f"# Self-supervised embedding: {adv.form} form",
           "",
           f"Run `{workdir}` at step {step}: {adv.form} form"
           + (f", {adv.metric} similarity" if adv.form == "dssm" else "")
           + (", with the adversarial prior N(0, I)" if adv.prior else ", no adversarial phase")
           + f"; {config.model.embed_dim}-d embeddings of {config.input.window_seconds:g}-s "
           "windows.", "",
           "## Adjacency on held-out compositions", "",
           "| AUC-ROC | accuracy | R@1 | positives | negatives |", "|---|---|---|---|---|",
           f"| {fmt('adjacency/auc_roc')} | {fmt('adjacency/accuracy')} | "
           f"{fmt('adjacency/r_at_1')} | {fmt('adjacency/pairs_positive', 0)} | "
           f"{fmt('adjacency/pairs_negative', 0)} |", "",
           "## Distance to the prior N(0, I)", "",
           "| mean abs mean | max abs mean | mean variance | mean abs log variance | MMD^2 | "
           "p-value | MMD^2 prior vs prior |", "|---|---|---|---|---|---|---|",
           f"| {fmt('prior/mean_abs_mean')} | {fmt('prior/max_abs_mean')} | "
           f"{fmt('prior/mean_variance')} | {fmt('prior/mean_abs_log_variance')} | "
           f"{fmt('prior/mmd2', 4)} | {fmt('prior/mmd2_p_value')} | "
           f"{fmt('prior/mmd2_prior_vs_prior', 4)} |", "",
           "## Query by example (other renditions of the composition)", "",
           "| embedding | mAP | chance mAP | R@10 | queries |", "|---|---|---|---|---|",
           f"| this run | {fmt('query_by_example/map')} | {fmt('query_by_example/chance_map')} | "
           f"{fmt('query_by_example/r_at_10')} | {fmt('query_by_example/queries', 0)} |"]
  if compare_workdir:
    lines.append(f"| contrastive (`{compare_workdir}`) | "
                 f"{fmt('contrastive/query_by_example/map')} | "
                 f"{fmt('contrastive/query_by_example/chance_map')} | "
                 f"{fmt('contrastive/query_by_example/r_at_10')} | "
                 f"{fmt('contrastive/query_by_example/queries', 0)} |")
  lines += ["", "## Query by humming (a recording's melody, one whistle-like voice)", "",
            "| query | embedding | mAP | chance mAP | R@10 |", "|---|---|---|---|---|"]
  for name in ("in_tune", "off_key_and_tempo"):
    for label, prefix in (("this run", ""), ("contrastive", "contrastive/"),
                          ("random", "random/")):
      key = f"{prefix}query_by_humming/{name}"
      if f"{key}/map" in results:
        lines.append(f"| {name.replace('_', ' ')} | {label} | {fmt(key + '/map')} | "
                     f"{fmt(f'query_by_humming/{name}/chance_map')} | {fmt(key + '/r_at_10')} |")
  lines += ["", "## Travel: playlists from track A to track B along the line between them", "",
            "| embedding | step distance / random order's | random orders rougher | "
            "prior sample to nearest track | track to nearest track |", "|---|---|---|---|---|",
            f"| this run | {fmt('travel/path_over_random_order')} | "
            f"{fmt('travel/share_of_orders_rougher')} | "
            f"{fmt('travel/prior_sample_nearest_distance')} | "
            f"{fmt('travel/library_nearest_distance')} |"]
  if compare_workdir:
    lines.append(f"| contrastive | {fmt('contrastive/travel/path_over_random_order')} | "
                 f"{fmt('contrastive/travel/share_of_orders_rougher')} | - | - |")
  lines += ["", "## Linear probes (AUC-ROC, train -> test)", "",
            "| family | this run | contrastive |", "|---|---|---|"]
  for family in PROBE_FAMILIES:
    key = f"linear_probe/{family}/auc_roc"
    lines.append(f"| {family} | {fmt(key)} | {fmt('contrastive/' + key)} |")
  return "\n".join(lines) + "\n"
