"""The item2vec / MF experiment that `launch/item2vec.py` runs (`configs/item2vec.py`).

1. Sequences: a playlist file (one per line), and/or the session simulator's
   listeners over a library index (`sequences.simulate`: each listener's
   earlier sessions, the tracks listened to, in order).
2. The universe of tracks: the library index's ids when one is given (items
   not in it are dropped and counted), else every id of the sequences.
3. A random `holdout_fraction` of the sequences is held out; a random
   `cold_fraction` of the tracks is removed from every training sequence.
   The cold-start set is every track in no training sequence: those chosen,
   and those that only held-out sequences hold or that nobody played.
4. Item2vec (`item2vec.train`, with the library's metadata as extra tokens
   if `extra_token_attributes` names some) and ALS (`als.fit_sequences`) train
   on the rest.
5. Next-track hit rate@k and nDCG@k on the held-out sequences for item2vec,
   MF, audio-embedding kNN (with a library), popularity and random, for all,
   warm and cold targets (`evaluate.next_track_table`). With extra tokens,
   "item2vec_tokens" also ranks cold tracks: each at the mean vector of its
   metadata tokens (`Item2Vec.vectors_from_tokens`).

Writes to `output_dir`: embeddings.npz (ids [N], item2vec vectors [N, d] and
known [N], MF item factors [N, F], cold [N] (in no training sequence) and
chosen_cold [N] (removed on purpose), the item2vec vocabulary and its
vectors, extra tokens included), report.json (NaN, e.g. the metrics of an
empty subset, written as null) and report.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Callable

import jax
import numpy as np

from jplaylist import library_index
from jplaylist.playlists import als
from jplaylist.playlists import evaluate
from jplaylist.playlists import item2vec
from jplaylist.playlists import sequences as sequences_lib


def simulated_sequences(config, index_path: str, log: Callable[[str], None] = print
                        ) -> list[list[str]]:
  """Listening sequences of `config.simulation.num_listeners` simulated listeners."""
  # Imported here: only this source needs the session engine.
  from jplaylist.session import study  # pylint: disable=g-import-not-at-top
  world_config = config.world.copy_and_resolve_references()
  with world_config.unlocked():
    world_config.library.kind = "demo"  # "demo" = read a library index
    world_config.library.index = index_path
  world = study.build_world(world_config, log)
  start = time.perf_counter()
  sequences, listener = sequences_lib.simulate(
      world, jax.random.key(config.seed + 1), config.simulation.num_listeners,
      min_length=config.simulation.min_length)
  log(f"simulated {config.simulation.num_listeners} listeners x "
      f"{world.config.history_sessions} sessions: {len(sequences)} sequences of "
      f"{np.mean([len(s) for s in sequences]):.1f} listened tracks on average "
      f"({len(set(listener.tolist()))} listeners, {time.perf_counter() - start:.1f} s)")
  return sequences


def _universe(sequences, index):
  """(ids, sequences restricted to them, items dropped, sequences left empty)."""
  if index is not None:
    ids = list(index.ids)
    known = set(ids)
    kept = [[t for t in s if t in known] for s in sequences]
    dropped = sum(len(s) for s in sequences) - sum(len(s) for s in kept)
    nonempty = [s for s in kept if s]
    return ids, nonempty, dropped, len(kept) - len(nonempty)
  ids = list(dict.fromkeys(t for s in sequences for t in s))
  return ids, [list(s) for s in sequences], 0, 0


def _json_safe(value):
  """`value` with every non-finite float as None (JSON has no NaN)."""
  if isinstance(value, dict):
    return {k: _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def run(config, output_dir: str, *, sequences_path: str | None = None,
        library_path: str | None = None, from_study: bool = False,
        log: Callable[[str], None] = print) -> dict[str, str]:
  """Trains item2vec and ALS, evaluates next-track ranking, writes the outputs.

  Args:
    config: `configs/item2vec.py`.
    output_dir: where embeddings.npz, report.json and report.md go.
    sequences_path: a playlist file, one per line (optional).
    library_path: a library index (`launch/embed.py`): the track universe,
      the audio embeddings, extra tokens and the simulator's library.
    from_study: add the simulated listeners' sequences (needs library_path).
    log: where progress lines go.

  Returns:
    paths by name: "embeddings", "report_json", "report_md".
  """
  if not sequences_path and not from_study:
    raise ValueError("give a playlist file (--sequences) and/or --from_study")
  if from_study and not library_path:
    raise ValueError("--from_study simulates listeners over a library: give --library")
  index = library_index.load(library_path) if library_path else None
  sequences, sources = [], {}
  if sequences_path:
    playlists, counts = sequences_lib.read_playlists(sequences_path)
    log(f"{sequences_path}: {counts['playlists']} playlists, {counts['items']} items "
        f"({counts['blank']} blank and {counts['comment']} comment lines skipped)")
    sequences += playlists
    sources["playlists"] = counts
  if from_study:
    simulated = simulated_sequences(config, library_path, log)
    sequences += simulated
    sources["simulated"] = {"sequences": len(simulated),
                            "items": sum(len(s) for s in simulated)}
  ids, sequences, dropped, emptied = _universe(sequences, index)
  if dropped:
    log(f"dropped {dropped} items not in the library index {library_path} "
        f"({emptied} sequences left empty and dropped)")
  row_of = {t: i for i, t in enumerate(ids)}

  evaluation = config.evaluation
  train, test = sequences_lib.split(sequences, evaluation.holdout_fraction, config.seed)
  cold_ids = sequences_lib.choose_cold_tracks(ids, evaluation.cold_fraction, config.seed)
  num_before = len(train)
  train, removed = sequences_lib.drop_tracks(train, cold_ids)
  emptied_by_cold = num_before - len(train)
  chosen_cold = np.zeros(len(ids), bool)
  chosen_cold[[row_of[t] for t in cold_ids]] = True
  train_rows = [np.asarray([row_of[t] for t in s], np.int64) for s in train]
  counts = np.bincount(np.concatenate(train_rows), minlength=len(ids)) if train_rows else (
      np.zeros(len(ids), np.int64))
  # Cold start: in no training sequence, whether chosen or never seen there
  # (only in held-out sequences, or played by nobody): the CF models know
  # nothing of these, so they must not count as warm.
  seen = counts > 0
  cold = ~seen
  never_seen = cold & ~chosen_cold
  log(f"{len(ids)} tracks, {int(cold.sum())} cold (in no training sequence): "
      f"{int(chosen_cold.sum())} chosen and removed ({removed} training items, "
      f"{emptied_by_cold} sequences left empty and dropped), {int(never_seen.sum())} "
      f"never seen in training; {len(train)} training and {len(test)} held-out sequences")

  extra = None
  attributes = tuple(config.extra_token_attributes)
  if attributes and config.item2vec.extra_tokens != "none":
    if index is None:
      raise ValueError("extra_token_attributes need a library index (--library)")
    extra = sequences_lib.attribute_tokens(index.ids, index.attributes, attributes)
  i2v_config = item2vec.Item2VecConfig(**config.item2vec.to_dict(), seed=config.seed)
  start = time.perf_counter()
  model = item2vec.train(train, i2v_config, extra_tokens=extra, log=log)
  i2v_seconds = time.perf_counter() - start
  vectors, known = model.vectors(ids)

  start = time.perf_counter()
  mf = als.fit_sequences(train_rows, len(ids), seed=config.seed, **config.mf.to_dict())
  mf_seconds = time.perf_counter() - start
  log(f"item2vec in {i2v_seconds:.1f} s, ALS ({config.mf.factors} factors, "
      f"{config.mf.iterations} iterations) in {mf_seconds:.1f} s")

  context_size = evaluation.context_size
  scorers = {"item2vec": evaluate.cosine_scorer(vectors, known, context_size=context_size),
             "mf_als": evaluate.mf_scorer(mf.item_factors, seen, regularization=mf.regularization,
                                          alpha=mf.alpha, context_size=context_size)}
  if extra:  # cold tracks placed by their metadata tokens
    tag_vectors, tag_known = model.vectors_from_tokens(ids, extra)
    scorers["item2vec_tokens"] = evaluate.cosine_scorer(tag_vectors, tag_known,
                                                        context_size=context_size)
  if index is not None:
    scorers["audio_knn"] = evaluate.cosine_scorer(index.embeddings, context_size=context_size)
  scorers["popularity"] = evaluate.popularity_scorer(counts)
  scorers["random"] = evaluate.random_scorer(len(ids), config.seed)
  test_rows = [[row_of[t] for t in s] for s in test]
  table = evaluate.next_track_table(test_rows, scorers, num_tracks=len(ids), cold=cold,
                                    k=evaluation.k, seed=config.seed)

  os.makedirs(output_dir, exist_ok=True)
  paths = {"embeddings": os.path.join(output_dir, "embeddings.npz"),
           "report_json": os.path.join(output_dir, "report.json"),
           "report_md": os.path.join(output_dir, "report.md")}
  np.savez(paths["embeddings"], ids=np.asarray(ids, dtype=str), item2vec=vectors,
           item2vec_known=known, mf_item_factors=mf.item_factors, cold=cold,
           chosen_cold=chosen_cold,
           vocabulary=np.asarray(model.vocabulary.tokens, dtype=str),
           vocabulary_vectors=model.input_vectors)
  report = {"sources": sources, "num_tracks": len(ids), "num_train_sequences": len(train),
            "num_test_sequences": len(test), "dropped_items": dropped,
            "dropped_sequences": {"emptied_by_library": emptied,
                                  "emptied_by_cold_tracks": emptied_by_cold,
                                  "item2vec_too_short": model.dropped_sequences},
            "cold_tracks": {"total": int(cold.sum()), "chosen": int(chosen_cold.sum()),
                            "never_seen": int(never_seen.sum())},
            "item2vec": dataclasses.asdict(i2v_config), "mf": config.mf.to_dict(),
            "evaluation": evaluation.to_dict(), "epoch_losses": model.epoch_losses,
            "seconds": {"item2vec": i2v_seconds, "mf": mf_seconds}, "table": table}
  with open(paths["report_json"], "w") as f:
    json.dump(_json_safe(report), f, indent=1, allow_nan=False)
  markdown = evaluate.to_markdown(table)
  with open(paths["report_md"], "w") as f:
    f.write(f"# Next-track ranking\n\n{len(train)} training sequences, {len(test)} held out, "
            f"{len(ids)} tracks ({int(cold.sum())} cold: in no training sequence; "
            f"{int(chosen_cold.sum())} of them removed on purpose). Context: the last "
            f"{context_size or 'all'} known tracks.\n\n{markdown}\n")
  log(markdown)
  return paths
