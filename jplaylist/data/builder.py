"""TFDS builder for music-text corpora: a folder of audio plus a manifest.

`build()` turns a manifest (see `manifest.py`) into a TFDS dataset stored as
ArrayRecord, with splits train / validation / test. Each example holds:

  id          Text
  audio       Tensor [num_samples] int16 at the config's sample rate (mono)
  texts       {SF, LF, PL, ASET: Sequence(Text)}; a kind may be empty
  group       Text (recordings of one group, e.g. a composition, share a split)
  attributes  Text, a JSON object of structured facts about the recording

Audio is stored as an int16 Tensor rather than `tfds.features.Audio`, which
needs TensorFlow. Bad input never stops a build: every manifest row or audio
file that cannot become a record is skipped and counted by reason, and the
report is printed at the end and saved as `build_report.json` beside the data.
Every good record is kept.

A build is cached: `build()` on unchanged input (manifest bytes, audio file
sizes and times, settings) returns the existing dataset without rebuilding.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shutil
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from jplaylist.data import audio_io
from jplaylist.data import manifest as manifest_lib

BUILDER_NAME = "music_text"
VERSION = "1.0.0"
REPORT_FILE = "build_report.json"


class MusicTextConfig(tfds.core.BuilderConfig):
  """One music-text dataset: where its manifest is and how to read it."""

  def __init__(self, *, name: str, manifest: str, audio_dir: str | None = None,
               checks: audio_io.AudioChecks = audio_io.AudioChecks(),
               split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
               split_seed: int = 0, num_threads: int = 4, **kwargs):
    super().__init__(name=name, version=VERSION, **kwargs)
    if abs(sum(split_fractions) - 1.0) > 1e-6 or min(split_fractions) < 0:
      raise ValueError(f"split_fractions must be >= 0 and sum to 1, got {split_fractions}")
    self.manifest = manifest
    self.audio_dir = audio_dir
    self.checks = checks
    self.split_fractions = tuple(split_fractions)
    self.split_seed = split_seed
    self.num_threads = num_threads


class MusicText(tfds.core.GeneratorBasedBuilder):
  """Audio recordings with text annotations from four source kinds."""

  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = []  # Every dataset brings its own MusicTextConfig.

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.rejected: list[manifest_lib.Rejected] = []
    self.empty_annotations_dropped = 0

  def _info(self) -> tfds.core.DatasetInfo:
    checks = self.builder_config.checks
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[0],
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),
            "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),
            "texts": tfds.features.FeaturesDict({
                source: tfds.features.Sequence(tfds.features.Text())
                for source in manifest_lib.SOURCES}),
            "group": tfds.features.Text(),
            "attributes": tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(sample_rate=checks.sample_rate),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    config = self.builder_config
    parsed = manifest_lib.read(config.manifest, config.audio_dir)
    self.rejected.extend(parsed.rejected)
    self.empty_annotations_dropped += parsed.empty_annotations_dropped
    by_split: dict[str, list[manifest_lib.Record]] = collections.defaultdict(list)
    for record in parsed.records:
      split = record.split or assign_split(
          record.group, config.split_fractions, config.split_seed)
      by_split[split].append(record)
    if not by_split:
      raise ValueError(f"manifest {config.manifest} has no usable record; "
                       f"rejected: {_count(self.rejected)}")
    return {split: self._generate_examples(records)
            for split, records in by_split.items()}

  def _generate_examples(self, records: list[manifest_lib.Record]) -> Iterator[
      tuple[str, dict[str, Any]]]:
    config = self.builder_config
    for record, result in _map_bounded(
        lambda r: _load_or_reason(r.audio_path, config.checks), records,
        config.num_threads):
      if isinstance(result, audio_io.InvalidAudio):
        self.rejected.append(manifest_lib.Rejected(
            id=record.id, audio=record.audio_path, reason=result.reason,
            detail=result.detail, line=record.line))
        continue
      yield record.id, {
          "id": record.id,
          "audio": result,
          "texts": {s: record.texts.get(s, []) for s in manifest_lib.SOURCES},
          "group": record.group,
          "attributes": json.dumps(record.attributes, sort_keys=True),
      }


def _load_or_reason(path: str, checks: audio_io.AudioChecks):
  try:
    return audio_io.load(path, checks)
  except audio_io.InvalidAudio as e:
    return e


def _map_bounded(fn, items, num_threads: int):
  """Ordered parallel map that keeps at most 2 * num_threads results in memory."""
  with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
    pending: collections.deque = collections.deque()
    for item in items:
      pending.append((item, pool.submit(fn, item)))
      if len(pending) >= 2 * num_threads:
        item0, future = pending.popleft()
        yield item0, future.result()
    while pending:
      item0, future = pending.popleft()
      yield item0, future.result()


def assign_split(group: str, fractions, seed: int) -> str:
  """Deterministic split of a group: a hash of (seed, group) against fractions."""
  digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
  u = int.from_bytes(digest[:8], "big") / 2.0**64
  cumulative = np.cumsum(fractions)
  index = int(np.searchsorted(cumulative, u, side="right"))
  return manifest_lib.SPLITS[min(index, len(fractions) - 1)]


def _count(rejected: list[manifest_lib.Rejected]) -> dict[str, int]:
  return dict(sorted(collections.Counter(r.reason for r in rejected).items()))


@dataclasses.dataclass
class BuildResult:
  """Where a dataset is and what its build kept and skipped."""

  path: str          # the version folder: data_dir/music_text/<name>/1.0.0
  report: dict[str, Any]
  cached: bool       # True when an identical earlier build was reused


def dataset_path(data_dir: str, name: str) -> str:
  return os.path.join(data_dir, BUILDER_NAME, name, VERSION)


def _fingerprint(config: MusicTextConfig) -> str:
  """Hash of everything a build reads: manifest bytes, audio stats, settings."""
  h = hashlib.sha256()
  with open(config.manifest, "rb") as f:
    manifest_bytes = f.read()
  h.update(manifest_bytes)
  settings = dict(checks=dataclasses.asdict(config.checks),
                  split_fractions=config.split_fractions,
                  split_seed=config.split_seed, version=VERSION,
                  audio_dir=os.path.abspath(config.audio_dir or
                                            os.path.dirname(config.manifest)))
  h.update(json.dumps(settings, sort_keys=True).encode())
  audio_dir = settings["audio_dir"]
  if os.path.isdir(audio_dir):
    for root, _, files in sorted(os.walk(audio_dir)):
      for name in sorted(files):
        stat = os.stat(os.path.join(root, name))
        h.update(f"{os.path.relpath(os.path.join(root, name), audio_dir)}:"
                 f"{stat.st_size}:{stat.st_mtime_ns}\n".encode())
  return h.hexdigest()[:16]


def build(*, manifest: str, data_dir: str, name: str,
          audio_dir: str | None = None,
          checks: audio_io.AudioChecks = audio_io.AudioChecks(),
          split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
          split_seed: int = 0, num_threads: int = 4, force: bool = False,
          verbose: bool = True) -> BuildResult:
  """Builds (or reuses) a TFDS music-text dataset from a manifest.

  Args:
    manifest: JSONL or CSV manifest (format in `manifest.py`).
    data_dir: TFDS data directory; the dataset lands in
      `data_dir/music_text/<name>/1.0.0`.
    name: the dataset's config name, e.g. "demo" or "my_corpus".
    audio_dir: base of relative audio paths (default: the manifest's folder).
    checks: sample rate and acceptance rules for audio.
    split_fractions: train/validation/test fractions for records whose
      manifest row names no split; assigned by hashing the record's group.
    split_seed: seed of that assignment.
    num_threads: threads decoding audio.
    force: rebuild even if an identical build exists.
    verbose: print the report.

  Returns:
    A BuildResult; `report` is also saved as `build_report.json` in `path`.
  """
  config = MusicTextConfig(name=name, manifest=os.path.abspath(manifest),
                           audio_dir=audio_dir, checks=checks,
                           split_fractions=split_fractions,
                           split_seed=split_seed, num_threads=num_threads)
  path = dataset_path(data_dir, name)
  fingerprint = _fingerprint(config)
  report_path = os.path.join(path, REPORT_FILE)
  if not force and os.path.exists(report_path):
    with open(report_path) as f:
      report = json.load(f)
    if report.get("fingerprint") == fingerprint:
      if verbose:
        print(f"Dataset {name!r} is up to date at {path} (cached).")
        print(format_report(report))
      return BuildResult(path, report, cached=True)
  if os.path.exists(path):
    shutil.rmtree(path)
  builder = MusicText(config=config, data_dir=data_dir)
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(
          download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS))
  kept = {split: info.num_examples for split, info in builder.info.splits.items()}
  report = {
      "dataset": name,
      "path": path,
      "manifest": config.manifest,
      "fingerprint": fingerprint,
      "sample_rate": checks.sample_rate,
      "kept": dict(sorted(kept.items())),
      "kept_total": sum(kept.values()),
      "skipped": _count(builder.rejected),
      "skipped_total": len(builder.rejected),
      "empty_annotations_dropped": builder.empty_annotations_dropped,
      "skipped_records": [r.as_dict() for r in
                          sorted(builder.rejected, key=lambda r: r.line)],
  }
  with open(report_path, "w") as f:
    json.dump(report, f, indent=1, ensure_ascii=False)
  if verbose:
    print(format_report(report))
  return BuildResult(path, report, cached=False)


def format_report(report: dict[str, Any], max_listed: int = 20) -> str:
  """A readable summary of a build report."""
  lines = [f"Dataset {report['dataset']!r} at {report['path']}",
           "  kept: " + ", ".join(f"{k} {v}" for k, v in report["kept"].items())
           + f" (total {report['kept_total']})"]
  if report["skipped_total"]:
    lines.append(f"  skipped {report['skipped_total']}: " + ", ".join(
        f"{k} {v}" for k, v in report["skipped"].items()))
    for r in report["skipped_records"][:max_listed]:
      lines.append(f"    line {r['line']}: {r['id'] or '?'} [{r['reason']}] {r['detail']}")
    if report["skipped_total"] > max_listed:
      lines.append(f"    ... {report['skipped_total'] - max_listed} more in "
                   f"{os.path.join(report['path'], REPORT_FILE)}")
  else:
    lines.append("  skipped: none")
  if report["empty_annotations_dropped"]:
    lines.append(f"  empty annotations dropped from kept records: "
                 f"{report['empty_annotations_dropped']}")
  return "\n".join(lines)


def open_split(path: str, split: str):
  """Random-access source over one split of a built dataset (no builder class needed).

  Args:
    path: the dataset's version folder (`BuildResult.path`).
    split: "train", "validation" or "test".
  """
  builder = tfds.builder_from_directory(path)
  if split not in builder.info.splits:
    raise ValueError(f"{path} has no split {split!r}; it has "
                     f"{', '.join(builder.info.splits)}")
  return builder.as_data_source(split)


def sample_rate_of(path: str) -> int:
  return int(tfds.builder_from_directory(path).info.metadata["sample_rate"])
