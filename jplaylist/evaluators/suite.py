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
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Mapping

import ml_collections

from jplaylist import inference
from jplaylist.data import builder
from jplaylist.evaluators import linear_probe
from jplaylist.evaluators import report
from jplaylist.evaluators import retrieval
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


def run_all(evaluators: list[Evaluator], model, log: Callable[[str], None] = print
            ) -> dict[str, float]:
  """Runs evaluators in order; returns every metric by name."""
  results = {}
  for evaluator in evaluators:
    start = time.perf_counter()
    for metric, value in evaluator.run(model):
      results[metric] = float(value)
    log(f"evals.{evaluator.name}: done in {time.perf_counter() - start:.1f} s")
  return results


def evaluate_workdir(workdir: str, *, step: int | None = None, split: str = "test",
                     data_dir: str | None = None, kinds: tuple[str, ...] = tuple(KINDS),
                     output_dir: str | None = None, log: Callable[[str], None] = print
                     ) -> tuple[dict[str, float], dict[str, str]]:
  """Evaluates a training workdir's checkpoint and writes the report.

  Args:
    workdir: a `launch.train` workdir.
    step: the checkpoint step; None for the latest.
    split: the evaluation split of the run's dataset.
    data_dir: where the dataset is built; None for the run's `input.data_dir`.
    kinds: which of `standard()`'s evaluators to run.
    output_dir: None for `workdir/eval/<split>_step<step>`.
    log: where progress lines go.

  Returns:
    (metrics by name, paths of metrics.json, report.md and the plots).
  """
  unknown = set(kinds) - set(KINDS)
  if unknown:
    raise ValueError(f"unknown evaluator kinds {sorted(unknown)}; known: {sorted(KINDS)}")
  model = inference.load(workdir, step)
  step = model.step
  data_dir = data_dir or model.config.input.data_dir
  dataset_path = builder.dataset_path(data_dir, model.config.input.dataset)
  if not os.path.isdir(dataset_path):
    raise FileNotFoundError(f"no built dataset at {dataset_path}; pass --data_dir or run "
                            f"launch.prepare_data first")
  entries = {name: dict(entry) for name, entry in standard(split).items() if name in kinds}
  # Dataset-specific options (queries, templates, words, families) are data in
  # the run's config.evals: an entry of the same kind lends them, on `split`.
  for configured in dict(model.config.get("evals") or {}).values():
    configured = configured.to_dict() if hasattr(configured, "to_dict") else dict(configured)
    kind = configured.get("kind")
    if kind in entries:
      entries[kind].update({k: v for k, v in configured.items()
                            if k not in ("every", "split", "test_split", "train_split")})
  evaluators = build(entries, dataset_path, log=log)
  results = run_all(evaluators, model, log=log)
  output_dir = output_dir or os.path.join(workdir, "eval", f"{split}_step{step}")
  info = {"workdir": os.path.abspath(workdir), "step": step, "dataset": dataset_path,
          "split": split, "evaluators": ", ".join(e.kind for e in evaluators)}
  return results, report.write(results, output_dir, info)
