"""Evaluators built from config entries, run together, inside training or standalone.

Every evaluator shares one protocol: it is built once from its settings
(loading its data then) and `run(model)` yields `(name, value)` pairs, `model`
being a `jplaylist.inference.Model`. A config lists evaluators by name:

  config.evals.zero_shot = dict(kind="zero_shot", every=200, split="validation")
  config.evals.retrieval = dict(kind="text_to_music", every=200, split="validation")

`kind` picks the class from `KINDS`; `every` is the training-step interval
(0: only standalone, through `launch/evaluate.py`); every other field is a
keyword argument of the class. Splits name splits of the experiment's
dataset; an entry may name another built dataset with `dataset_path`.

`evaluate_splits` runs the standard set on several splits of a trained
workdir and writes one report (`report.py`) with the run's targets
(`targets.py`). Within a `run_all` call the parameters are fixed, so a
recording that several evaluators read is embedded once.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any, Callable, Mapping, Sequence

import ml_collections
import numpy as np

from jplaylist import inference
from jplaylist.data import builder
from jplaylist.evaluators import linear_probe
from jplaylist.evaluators import report
from jplaylist.evaluators import retrieval
from jplaylist.evaluators import targets as targets_lib
from jplaylist.evaluators import text_triplets
from jplaylist.evaluators import vocabulary
from jplaylist.evaluators import zero_shot

KINDS = {
    "zero_shot": zero_shot.ZeroShotTagging,
    "text_to_music": retrieval.TextToMusic,
    "caption_retrieval": retrieval.CaptionRetrieval,
    "vocabulary_tagging": vocabulary.VocabularyTagging,
    "linear_probe": linear_probe.LinearProbe,
    "text_triplets": text_triplets.TextTriplets,
}
# Keyword arguments that name a split of the dataset (the rest pass through).
_NEEDS_DATASET = {"zero_shot", "text_to_music", "caption_retrieval", "vocabulary_tagging",
                  "linear_probe"}


def standard(split: str = "test", every: int = 0) -> ml_collections.ConfigDict:
  """All four evaluations of the issue's protocol on one split.

  The linear probes train on the train split and are scored on `split`.
  """
  return ml_collections.ConfigDict({
      "zero_shot": dict(kind="zero_shot", every=every, split=split),
      "text_to_music": dict(kind="text_to_music", every=every, split=split),
      "linear_probe": dict(kind="linear_probe", every=every, train_split="train",
                           test_split=split),
      "text_triplets": dict(kind="text_triplets", every=every),
  })


class Evaluator:
  """One configured evaluator and its interval."""

  def __init__(self, name: str, kind: str, every: int, instance: Any):
    self.name, self.kind, self.every, self.instance = name, kind, every, instance

  def due(self, step: int) -> bool:
    return bool(self.every) and step % self.every == 0

  def run(self, model):
    return self.instance.run(model)


def build(entries: Mapping[str, Any] | None, dataset_path: str,
          log: Callable[[str], None] = print) -> list[Evaluator]:
  """Builds the evaluators of a config's `evals` (loading their data once).

  Args:
    entries: name -> {kind, every, **kwargs}.
    dataset_path: the experiment's built dataset (the default for every entry).
    log: where progress lines go.

  Raises:
    ValueError: an unknown kind or a bad keyword, naming the entry.
  """
  out = []
  for name, entry in dict(entries or {}).items():
    # Nested ConfigDicts (words, templates, mappings) become plain dicts.
    entry = entry.to_dict() if hasattr(entry, "to_dict") else dict(entry)
    kind = entry.pop("kind", name)
    every = int(entry.pop("every", 0))
    if kind not in KINDS:
      raise ValueError(f"evals.{name}: unknown kind {kind!r}; known: {sorted(KINDS)}")
    if kind in _NEEDS_DATASET:
      entry.setdefault("dataset_path", dataset_path)
    start = time.perf_counter()
    try:
      instance = KINDS[kind](**entry)
    except TypeError as e:
      raise ValueError(f"evals.{name} ({kind}): {e}") from e
    log(f"evals.{name}: {kind} ready in {time.perf_counter() - start:.1f} s")
    out.append(Evaluator(name, kind, every, instance))
  return out


class _AudioCache:
  """A model whose `embed_audio` remembers recordings already embedded.

  Evaluators of one split each load and embed it (zero-shot, retrieval, the
  probe's test side); within one `run_all` the parameters are fixed, so a
  recording (keyed by its rate and a digest of its samples) is embedded once.
  Everything else is the wrapped model's.
  """

  def __init__(self, model):
    self._model = model
    self._cache: dict[tuple, np.ndarray] = {}

  def __getattr__(self, name):
    return getattr(self._model, name)

  def embed_audio(self, waveforms, sample_rate: int) -> np.ndarray:
    arrays = [np.ascontiguousarray(w, np.float32) for w in waveforms]
    keys = [(int(sample_rate), a.shape, hashlib.blake2b(a.tobytes(), digest_size=16).digest())
            for a in arrays]
    if not keys:
      return self._model.embed_audio([], sample_rate)
    todo = [k for k in dict.fromkeys(keys) if k not in self._cache]
    if todo:
      where = dict(zip(keys, range(len(keys))))
      embedded = self._model.embed_audio([arrays[where[k]] for k in todo], sample_rate)
      self._cache.update(zip(todo, embedded))
    return np.stack([self._cache[k] for k in keys])


def training_summary(results: Mapping[str, float]) -> str:
  """The line a training log prints: family means, mAPs, triplets (no per-tag AUCs)."""
  return report.training_summary(results)


def run_all(evaluators: list[Evaluator], model, log: Callable[[str], None] = print
            ) -> dict[str, float]:
  """Runs evaluators in order; returns every metric by name.

  Recordings that several evaluators share are embedded once per call.
  """
  results = {}
  cached = model if isinstance(model, _AudioCache) else _AudioCache(model)
  for evaluator in evaluators:
    start = time.perf_counter()
    for metric, value in evaluator.run(cached):
      results[metric] = float(value)
    log(f"evals.{evaluator.name}: done in {time.perf_counter() - start:.1f} s")
  return results


def _entries(model, split: str, kinds: tuple[str, ...]) -> dict[str, dict]:
  """`standard(split)`'s entries of `kinds`, with the run's dataset options."""
  entries = {name: dict(entry) for name, entry in standard(split).items() if name in kinds}
  # Dataset-specific options (queries, templates, words, families) are data in
  # the run's config.evals: an entry of the same kind lends them, on `split`.
  for configured in dict(model.config.get("evals") or {}).values():
    configured = configured.to_dict() if hasattr(configured, "to_dict") else dict(configured)
    kind = configured.get("kind")
    if kind in entries:
      entries[kind].update({k: v for k, v in configured.items()
                            if k not in ("every", "split", "test_split", "train_split")})
  return entries


def parse_splits(split: str | Sequence[str]) -> list[str]:
  """"test,test_heldout_timbre" or a list -> split names (no blanks or repeats)."""
  names = [s.strip() for s in (split.split(",") if isinstance(split, str) else split)]
  if not names or not all(names):
    raise ValueError(f"splits {split!r}: expected comma-separated split names")
  repeated = sorted({s for s in names if names.count(s) > 1})
  if repeated:
    raise ValueError(f"splits {split!r}: {repeated} named twice")
  return names


def evaluate_splits(workdir: str, *, splits: str | Sequence[str] = ("test",),
                    step: int | None = None, data_dir: str | None = None,
                    kinds: tuple[str, ...] = tuple(KINDS), output_dir: str | None = None,
                    targets: Any = None, log: Callable[[str], None] = print
                    ) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
  """Evaluates a training workdir's checkpoint on several splits; one report.

  Args:
    workdir: a `launch.train` workdir.
    splits: split names of the run's dataset ("test,test_heldout_timbre" or a list).
    step: the checkpoint step; None for the latest.
    data_dir: where the dataset is built; None for the run's `input.data_dir`.
    kinds: which of `standard()`'s evaluators to run.
    output_dir: None for `workdir/eval/<split>[+<split>...]_step<step>`.
    targets: bars for the report (`targets.parse` data); None for the run's
      `config.targets`.
    log: where progress lines go.

  Returns:
    ({split: metrics by name}, paths of metrics.json, report.md and the plots).
    Split-independent evaluators (text triplets) run once; their figures
    appear under every split.
  """
  names = parse_splits(splits)
  unknown = set(kinds) - set(KINDS)
  if unknown:
    raise ValueError(f"unknown evaluator kinds {sorted(unknown)}; known: {sorted(KINDS)}")
  model = inference.load(workdir, step)
  parsed_targets = targets_lib.parse(model.config.get("targets") if targets is None
                                     else targets)
  step = model.step
  data_dir = data_dir or model.config.input.data_dir
  dataset_path = builder.dataset_path(data_dir, model.config.input.dataset)
  if not os.path.isdir(dataset_path):
    raise FileNotFoundError(f"no built dataset at {dataset_path}; pass --data_dir or run "
                            f"launch.prepare_data first")
  for split in names:  # a missing split fails before minutes of work
    builder.open_split(dataset_path, split)
  # Split-independent evaluators (text triplets) run once; their figures go
  # under every split. A split's data is loaded only while it is evaluated.
  entries = _entries(model, names[0], kinds)
  shared = build({k: v for k, v in entries.items() if v["kind"] not in _NEEDS_DATASET},
                 dataset_path, log=log)
  cached = _AudioCache(model)
  shared_results = run_all(shared, cached, log=log)
  by_split, run_kinds = {}, [e.kind for e in shared]
  for index, split in enumerate(names):
    log(f"split {split!r} ({index + 1}/{len(names)})")
    evaluators = build({k: v for k, v in _entries(model, split, kinds).items()
                        if v["kind"] in _NEEDS_DATASET}, dataset_path, log=log)
    run_kinds += [e.kind for e in evaluators if e.kind not in run_kinds]
    by_split[split] = {**run_all(evaluators, cached, log=log), **shared_results}
    del evaluators
  output_dir = output_dir or os.path.join(workdir, "eval", f"{'+'.join(names)}_step{step}")
  info = {"workdir": os.path.abspath(workdir), "step": step, "dataset": dataset_path,
          "split": ",".join(names), "evaluators": ", ".join(run_kinds)}
  paths = report.write_splits(by_split, output_dir, info, parsed_targets)
  for split, results in by_split.items():
    log(f"\n{split}:")
    for line in report.headline(results, parsed_targets):
      log(f"  {line}")
  return by_split, paths


def evaluate_workdir(workdir: str, *, step: int | None = None, split: str = "test",
                     data_dir: str | None = None, kinds: tuple[str, ...] = tuple(KINDS),
                     output_dir: str | None = None, targets: Any = None,
                     log: Callable[[str], None] = print
                     ) -> tuple[dict[str, float], dict[str, str]]:
  """`evaluate_splits` on one split: (metrics by name, paths of the report's files)."""
  by_split, paths = evaluate_splits(workdir, splits=[split], step=step, data_dir=data_dir,
                                    kinds=kinds, output_dir=output_dir, targets=targets,
                                    log=log)
  return by_split[split], paths
