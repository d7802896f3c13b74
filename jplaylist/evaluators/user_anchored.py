"""Evaluation of user-anchored metric learning (issue 16, items 4 and 5).

A user's score for a track is the cosine of the user's embedding and the
track's audio embedding (the mean of `track_windows` evenly spaced windows,
each L2-normalised). Per part of the interactions (`session.users.split`):

  AUC           liked vs disliked, per user (the users with both), averaged,
                with its standard error over those users (a held-out part
                has a handful of interactions per user: the error says how
                far from 0.5 is more than noise);
  precision@k   the share of liked tracks among a user's k best-scored
                interactions of the part (users with at least k), averaged,
                beside the same users' liked share (what a random order gets);

for seen users' held-out interactions ("test"), users never trained on
("unseen_users"), and tracks never trained on ("new_tracks": the cold-start
case the method exists for; "new_tracks_unseen_users": both). A user-id
lookup (DCUE) has no embedding for an unseen user: those cells are n/a.

Item 5, the best users for a new track: rank the candidate users by cosine
to the track's audio embedding; a track's true fans are the users who liked
it. recall@k (the mean share of a track's fans in its top k) and hit@k (the
share of tracks with a fan in the top k) over the new tracks with a fan,
beside their exact expectations under a random ranking.

`evaluate(workdir)` scores the trained parameters and, as a baseline, a
random initialisation of the same model; writes metrics.json and report.md,
and exports the trained 40-d audio embeddings of every track as a
`library_index.LibraryIndex` (audio_embeddings.npz) for the genre SVM and
the session simulator.
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jplaylist import checkpoint as checkpoint_lib
from jplaylist import library_index
from jplaylist.models import user_anchored as model_lib
from jplaylist.trainers import user_anchored as trainer

REPORTED_PARTS = ("train", "test", "unseen_users", "new_tracks", "new_tracks_unseen_users")


# -------------------------------------------------------------- metrics ----
def binary_auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """Area under the ROC curve (ties count one half), NaN without both classes."""
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
  positives, negatives = int(labels.sum()), int((~labels).sum())
  if not positives or not negatives:
    return float("nan")
  order = np.argsort(scores, kind="mergesort")
  ranks = np.empty(len(scores))
  sorted_scores = scores[order]
  # Average ranks over ties (Mann-Whitney U).
  _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
  average = first + (counts + 1) / 2.0
  ranks[order] = np.repeat(average, counts)
  return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def per_user_metrics(scores: np.ndarray, liked: np.ndarray, user: np.ndarray, k: int
                     ) -> dict[str, float]:
  """Per-user AUC and precision@k, averaged over users (see the module docstring).

  Args:
    scores, liked, user: [I] interaction scores, labels and user rows.
    k: of precision@k.

  Returns:
    {"auc", "auc_se" (standard error of the mean over users), "auc_users",
    "precision", "precision_random", "precision_users", "interactions"}; NaN
    where no user qualifies (and "auc_se" where fewer than two do).
  """
  aucs, precision, base = [], [], []
  for u in np.unique(user):
    mine = user == u
    auc = binary_auc(scores[mine], liked[mine])
    if not math.isnan(auc):
      aucs.append(auc)
    if mine.sum() >= k:
      top = np.argsort(-scores[mine], kind="stable")[:k]
      precision.append(float(liked[mine][top].mean()))
      base.append(float(liked[mine].mean()))
  mean = lambda x: float(np.mean(x)) if x else float("nan")
  se = float(np.std(aucs, ddof=1) / math.sqrt(len(aucs))) if len(aucs) > 1 else float("nan")
  return {"auc": mean(aucs), "auc_se": se, "auc_users": len(aucs), "precision": mean(precision),
          "precision_random": mean(base), "precision_users": len(precision),
          "interactions": int(len(scores))}


def fan_recall(user_embeddings: np.ndarray, track_embeddings: np.ndarray,
               fans: Sequence[np.ndarray], ks: Sequence[int]) -> dict[str, float]:
  """Item 5: how often a track's fans are among the k users closest to it.

  Args:
    user_embeddings: [C, d] candidate users (L2-normalised).
    track_embeddings: [T, d] tracks (L2-normalised).
    fans: T arrays of candidate rows who liked each track (empty: skipped).
    ks: the k's.

  Returns:
    {"tracks", "candidates", f"recall@{k}", f"hit@{k}", f"random_recall@{k}",
    f"random_hit@{k}"}: means over the tracks with a fan; the random ones are
    the exact expectations of a uniformly random ranking.
  """
  candidates = len(user_embeddings)
  kept = [t for t, f in enumerate(fans) if len(f)]
  out: dict[str, float] = {"tracks": len(kept), "candidates": candidates}
  if not kept:
    return out
  similarity = track_embeddings[kept] @ user_embeddings.T        # [T', C]
  order = np.argsort(-similarity, axis=1, kind="stable")
  for k in ks:
    k_eff = min(k, candidates)
    recall, hit, random_recall, random_hit = [], [], [], []
    for row, t in enumerate(kept):
      found = np.isin(fans[t], order[row, :k_eff])
      recall.append(found.mean())
      hit.append(float(found.any()))
      random_recall.append(k_eff / candidates)
      # P(no fan in a random k of C) = C(C - f, k) / C(C, k).
      random_hit.append(1.0 - math.comb(candidates - len(fans[t]), k_eff)
                        / math.comb(candidates, k_eff))
    out.update({f"recall@{k}": float(np.mean(recall)), f"hit@{k}": float(np.mean(hit)),
                f"random_recall@{k}": float(np.mean(random_recall)),
                f"random_hit@{k}": float(np.mean(random_hit))})
  return out


# ------------------------------------------------------------ embedding ----
@functools.partial(jax.jit, static_argnums=0)
def _embed_audio(model, variables, audio):
  return model.apply(variables, audio, method=model_lib.Model.embed_audio)


@functools.partial(jax.jit, static_argnums=0)
def _embed_users(model, variables, users):
  return model.apply(variables, users, method=model_lib.Model.embed_users)


def _unit(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def evenly_spaced_windows(audio: np.ndarray, window: int, count: int) -> np.ndarray:
  """[count, window] int16: windows starting evenly from 0 to the last full
  window (zero-padded at the end when the recording is shorter)."""
  starts = np.linspace(0, max(0, len(audio) - window), count).round().astype(int)
  out = np.zeros((count, window), np.int16)
  for i, start in enumerate(starts):
    piece = audio[start:start + window]
    out[i, :len(piece)] = piece
  return out


def embed_tracks(model: model_lib.Model, variables, world: trainer.World, *,
                 windows: int = 3, batch_size: int = 32, log=print) -> np.ndarray:
  """[N, d] L2-normalised audio embeddings of every track (mean of `windows`);
  `variables`: {"params", "batch_stats"}."""
  window = int(round(model.window_seconds * world.sample_rate))
  chunks = []
  tracks = list(range(len(world.track_ids)))
  per_batch = max(1, batch_size // windows)
  for start in range(0, len(tracks), per_batch):
    part = tracks[start:start + per_batch]
    audio = np.concatenate([evenly_spaced_windows(world.audio(t), window, windows)
                            for t in part])
    pad = per_batch * windows - len(audio)  # one compiled shape
    audio = np.concatenate([audio, np.zeros((pad, window), np.int16)])
    z = _unit(np.asarray(_embed_audio(model, variables, jnp.asarray(audio))))[:len(part) * windows]
    chunks.append(_unit(z.reshape(len(part), windows, -1).mean(axis=1)))
    if log and start and start % (per_batch * 20) == 0:
      log(f"  embedded {start} / {len(tracks)} tracks")
  return np.concatenate(chunks)


def embed_users(model: model_lib.Model, variables, world: trainer.World) -> np.ndarray:
  """[U, d] L2-normalised user embeddings (a lookup's unseen users too: untrained rows)."""
  users = {k: jnp.asarray(v) for k, v in
           world.user_features(np.arange(world.users.num_users)).items()}
  return _unit(np.asarray(_embed_users(model, variables, users)))


# --------------------------------------------------------------- scoring ----
def score(model: model_lib.Model, user_embeddings: np.ndarray, track_embeddings: np.ndarray,
          world: trainer.World, *, precision_k: int, fan_ks: Sequence[int]) -> dict[str, Any]:
  """Every part's per-user metrics and the fan recall of new tracks."""
  users = world.users
  results: dict[str, Any] = {}
  for part in REPORTED_PARTS:
    rows = world.split.parts[part]
    if model.user == "lookup" and part in ("unseen_users", "new_tracks_unseen_users"):
      results[part] = None  # no embedding for a user never trained on
      continue
    scores = np.sum(user_embeddings[users.user[rows]] * track_embeddings[users.track[rows]], -1)
    results[part] = per_user_metrics(scores, users.liked[rows], users.user[rows], precision_k)
  new_tracks = np.flatnonzero(world.split.new_track)
  liked_rows = np.flatnonzero(users.liked)
  for name, candidates in (("seen_users", np.flatnonzero(~world.split.unseen_user)),
                           ("all_users", np.arange(users.num_users))):
    if model.user == "lookup" and name == "all_users":
      results[f"fans_{name}"] = None
      continue
    position = np.full(users.num_users, -1)
    position[candidates] = np.arange(len(candidates))
    fans = []
    for t in new_tracks:
      fan_rows = position[users.user[liked_rows[users.track[liked_rows] == t]]]
      fans.append(fan_rows[fan_rows >= 0])
    results[f"fans_{name}"] = fan_recall(user_embeddings[candidates],
                                         track_embeddings[new_tracks], fans, fan_ks)
  return results


def _cell(value, digits=3) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "n/a"
  return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def report_markdown(results: dict[str, dict[str, Any]], config, workdir: str, step: int) -> str:
  """The report: an AUC / precision table per model row, then the fan recall."""
  k = config.evaluation.precision_k
  variant = (f"loss={config.loss.kind}, negatives={config.loss.negatives}, "
             f"user={config.model.user}, window={config.input.window_seconds:g} s")
  lines = [f"# User-anchored metric learning: {workdir} (step {step})", "", variant, "",
           f"Per-user liked/disliked AUC (± its standard error over users) and precision@{k} "
           "(random order: the liked share).", "",
           "| model | part | users | interactions | AUC | ± s.e. | precision@k | random |",
           "|---|---|---|---|---|---|---|---|"]
  for name, parts in results.items():
    for part in REPORTED_PARTS:
      m = parts[part]
      if m is None:
        lines.append(f"| {name} | {part} | n/a | n/a | n/a | n/a | n/a | n/a |")
        continue
      lines.append(f"| {name} | {part} | {m['auc_users']} | {m['interactions']} | "
                   f"{_cell(m['auc'])} | {_cell(m.get('auc_se'))} | {_cell(m['precision'])} | "
                   f"{_cell(m['precision_random'])} |")
  ks = list(config.evaluation.fan_k)
  lines += ["", "New tracks: their fans among the k users closest to the track's audio "
            "embedding (recall@k; hit@k: at least one fan).", "",
            "| model | candidates | tracks | " + " | ".join(
                f"recall@{k} | hit@{k}" for k in ks) + " |",
            "|---|---|---|" + "---|---|" * len(ks)]
  for name, parts in list(results.items()) + [("random ranking", None)]:
    for who in ("seen_users", "all_users"):
      source = results[next(iter(results))] if parts is None else parts
      m = source[f"fans_{who}"]
      if m is None:
        if parts is not None:
          lines.append(f"| {name} | {who} | n/a | " + " | ".join("n/a | n/a" for _ in ks) + " |")
        continue
      prefix = "random_" if parts is None else ""
      lines.append(f"| {name} | {who} ({m['candidates']}) | {m['tracks']} | " + " | ".join(
          f"{_cell(m.get(f'{prefix}recall@{k}'))} | {_cell(m.get(f'{prefix}hit@{k}'))}"
          for k in ks) + " |")
  return "\n".join(lines) + "\n"


def evaluate(workdir: str, *, step: int | None = None, output_dir: str | None = None,
             data_dir: str | None = None, log=print) -> tuple[dict[str, Any], dict[str, str]]:
  """Scores a trained run (and a random initialisation); writes the report.

  Returns:
    (results {"trained": ..., "random init": ...}, paths {"metrics",
    "report", "embeddings"}).
  """
  step = checkpoint_lib.latest_step(workdir) if step is None else step
  world = None
  if data_dir:
    _, saved = checkpoint_lib.restore_on_host(workdir, step)
    config = ml_collections.ConfigDict(saved)
    config.input.data_dir = data_dir
    world = trainer.build_world(config, log=log)
  model, variables, config, world = trainer.restore(workdir, step, world=world)
  log(f"{world.users.num_users} users, {len(world.track_ids)} tracks "
      f"({int(world.split.new_track.sum())} new), "
      + ", ".join(f"{k}: {len(v)}" for k, v in world.split.parts.items()))
  evaluation = config.evaluation
  rows = {"trained": variables}
  if evaluation.random_init_baseline:
    rows["random init"] = trainer.init_variables(model, world, jax.random.key(config.seed + 1))
  results, exported = {}, None
  for name, row_variables in rows.items():
    log(f"{name}: embedding {len(world.track_ids)} tracks and {world.users.num_users} users")
    tracks = embed_tracks(model, row_variables, world, windows=evaluation.track_windows,
                          log=log)
    users = embed_users(model, row_variables, world)
    results[name] = score(model, users, tracks, world, precision_k=evaluation.precision_k,
                          fan_ks=tuple(evaluation.fan_k))
    if exported is None:
      exported = tracks
  output_dir = output_dir or os.path.join(workdir, "eval", f"user_anchored_step{step}")
  os.makedirs(output_dir, exist_ok=True)
  index = library_index.LibraryIndex(
      ids=list(world.track_ids), embeddings=exported.astype(np.float32),
      attributes=[dict(a, split=s) for a, s in zip(world.attributes, world.track_split)],
      meta={"workdir": os.path.abspath(workdir), "step": int(step),
            "source": "user_anchored audio branch",
            "window_seconds": float(config.input.window_seconds),
            "track_windows": int(evaluation.track_windows)})
  paths = {"metrics": os.path.join(output_dir, "metrics.json"),
           "report": os.path.join(output_dir, "report.md"),
           "embeddings": index.save(os.path.join(output_dir, "audio_embeddings.npz"))}
  with open(paths["metrics"], "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  with open(paths["report"], "w") as f:
    f.write(report_markdown(results, config, workdir, step))
  return results, paths
