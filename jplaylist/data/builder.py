"""TFDS builder for music-text corpora: a folder of audio plus a manifest.

`build()` turns a manifest (see `manifest.py`) into a TFDS dataset stored as
ArrayRecord, with splits train / validation / test. Each example holds:

  id          Text
  num_samples int64, samples of the recording (mono, the config's sample rate)
  texts       {SF, LF, PL, ASET: Sequence(Text)}; a kind may be empty
  group       Text (recordings of one group, e.g. a composition, share a split)
  attributes  Text, a JSON object of structured facts about the recording

The samples are int16 rather than `tfds.features.Audio`, which needs
TensorFlow, and by default they are not in the records: each split keeps them
in one flat int16 file beside its shards, so that a 10-s training window reads
only its own bytes (`split_audio.py` describes the layout). Records then hold
`num_samples` instead of `audio`, and `open_split` hands each record out with
`audio` as a memory-mapped view. `audio_layout="record"` builds the earlier
layout, the samples inside each record (`audio: Tensor [num_samples] int16`);
datasets built before the split files existed have it, and read as before.

Bad input never stops a build: every manifest row or audio file that cannot
become a record is skipped and counted by reason, and the report is printed at
the end and saved as `build_report.json` beside the data. Every good record is
kept.

A build is cached: `build()` on unchanged input (manifest bytes, audio file
sizes and times, settings, audio layout) returns the existing dataset without
rebuilding.

The same builder also runs on Apache Beam (`build(..., beam_runner=...,
beam_options=...)`, an optional install: requirements-beam.txt): the DirectRunner
on one machine, Dataflow, Flink or Spark by pipeline options. Its stages, and
how the report is gathered from Beam counters, are in `builder_beam.py`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shutil
from typing import Any, Iterator, Sequence

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from jplaylist.data import audio_io
from jplaylist.data import folds
from jplaylist.data import manifest as manifest_lib
from jplaylist.data import split_audio
from jplaylist.data import text_filter as text_filter_lib

BUILDER_NAME = "music_text"
VERSION = "1.0.0"
REPORT_FILE = "build_report.json"
FILTERED_FILE = "filtered_texts.jsonl"
# How the samples are stored (module docstring): one flat file per split with
# an index ("split_file"), or inside each record ("record", the earlier layout).
AUDIO_LAYOUTS = ("split_file", "record")
STAGING_DIR = "audio_staging"


class MusicTextConfig(tfds.core.BuilderConfig):
  """One music-text dataset: where its manifest is and how to read it."""

  def __init__(self, *, name: str, manifest: str, audio_dir: str | None = None,
               checks: audio_io.AudioChecks = audio_io.AudioChecks(),
               split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
               split_seed: int = 0, num_threads: int = 4,
               text_filter: text_filter_lib.Settings | None = None,
               audio_layout: str = "split_file", **kwargs):
    super().__init__(name=name, version=VERSION, **kwargs)
    if audio_layout not in AUDIO_LAYOUTS:
      raise ValueError(f"audio_layout must be one of {AUDIO_LAYOUTS}, got {audio_layout!r}")
    if abs(sum(split_fractions) - 1.0) > 1e-6 or min(split_fractions) < 0:
      raise ValueError(f"split_fractions must be >= 0 and sum to 1, got {split_fractions}")
    self.manifest = manifest
    self.audio_dir = audio_dir
    self.checks = checks
    self.split_fractions = tuple(split_fractions)
    self.split_seed = split_seed
    self.num_threads = num_threads
    self.text_filter = text_filter
    self.audio_layout = audio_layout


class MusicText(tfds.core.GeneratorBasedBuilder):
  """Audio recordings with text annotations from four source kinds."""

  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = []  # Every dataset brings its own MusicTextConfig.

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.rejected: list[manifest_lib.Rejected] = []
    self.empty_annotations_dropped = 0
    self.filtered: list[text_filter_lib.Filtered] = []
    # Beam path only: the pipeline's skip counters (`builder_beam.counters`),
    # and the manifest rows the driver rejected before the pipeline ran.
    self.pipeline_counters: dict[str, dict[str, int]] | None = None
    self._manifest_rejected: list[manifest_lib.Rejected] = []
    self._use_beam = False
    self._details_dir = ""
    self._staging_dir: str | None = None

  def _info(self) -> tfds.core.DatasetInfo:
    checks = self.builder_config.checks
    if self.builder_config.audio_layout == "record":
      samples = {"audio": tfds.features.Tensor(shape=(None,), dtype=np.int16)}
    else:  # In the split's audio file; the record says how many.
      samples = {"num_samples": tfds.features.Tensor(shape=(), dtype=np.int64)}
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[0],
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(),
            **samples,
            "texts": tfds.features.FeaturesDict({
                source: tfds.features.Sequence(tfds.features.Text())
                for source in manifest_lib.SOURCES}),
            "group": tfds.features.Text(),
            "attributes": tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(sample_rate=checks.sample_rate),
    )

  def _download_and_prepare(self, dl_manager, download_config):
    # As for TFDS's own Beam datasets: a runner or pipeline options in the
    # download config mean Beam.
    self._use_beam = (download_config.beam_runner is not None
                      or download_config.beam_options is not None)
    super()._download_and_prepare(dl_manager, download_config)

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    config = self.builder_config
    # The driver reads the manifest on both paths: it names the splits.
    parsed = manifest_lib.read(config.manifest, config.audio_dir)
    self.rejected.extend(parsed.rejected)
    self._manifest_rejected = list(parsed.rejected)
    self.empty_annotations_dropped += parsed.empty_annotations_dropped
    records = parsed.records
    if config.text_filter is not None and not self._use_beam:
      records = self._filter_texts(records)  # On Beam, a pipeline stage.
    by_split: dict[str, list[manifest_lib.Record]] = collections.defaultdict(list)
    for record in records:
      split = record.split or assign_split(
          record.group, config.split_fractions, config.split_seed)
      by_split[split].append(record)
    if not by_split:
      raise ValueError(f"manifest {config.manifest} has no usable record; "
                       f"rejected: {_count(self.rejected)}")
    self._details_dir = os.path.join(os.fspath(self.data_dir), "beam_details")
    if config.audio_layout == "split_file":
      # In the folder TFDS renames into place on success, so a failed build
      # leaves no stray staging files beside a good dataset.
      self._staging_dir = os.path.join(os.fspath(self.data_dir), STAGING_DIR)
      os.makedirs(self._staging_dir, exist_ok=True)
    return {split: self._generate_examples(records, split)
            for split, records in by_split.items()}

  def _filter_texts(self, records: list[manifest_lib.Record]) -> list[manifest_lib.Record]:
    """Runs the text filter; a record left with no text is skipped, and counted."""
    kept_texts, filtered = text_filter_lib.TextFilter(self.builder_config.text_filter).apply(
        [(r.id, r.texts) for r in records])
    self.filtered.extend(filtered)
    out = []
    for record, texts in zip(records, kept_texts):
      if texts:
        out.append(dataclasses.replace(record, texts=texts))
      else:
        self.rejected.append(manifest_lib.Rejected(
            id=record.id, audio=record.audio_path, reason="all_texts_filtered",
            detail=f"every text was filtered (listed in {FILTERED_FILE})", line=record.line))
    return out

  def _generate_examples(self, records: list[manifest_lib.Record], split: str):
    """(id, example) pairs of one split: a generator, or on Beam a PTransform."""
    config = self.builder_config
    if not self._use_beam:
      return self._examples_in_process(records)
    from jplaylist.data import builder_beam  # pylint: disable=g-import-not-at-top
    return builder_beam.SplitExamples(
        records, checks=config.checks, text_filter=config.text_filter,
        details_prefix=os.path.join(self._details_dir, split),
        staging_dir=self._staging_dir)

  def _examples_in_process(self, records: list[manifest_lib.Record]) -> Iterator[
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
      yield record.id, to_example(record, result, staging_dir=self._staging_dir)

  def _process_pipeline_result(self, pipeline_result) -> None:
    """Beam path: counts from the pipeline's counters, details from its side files."""
    from jplaylist.data import builder_beam  # pylint: disable=g-import-not-at-top
    self.pipeline_counters = builder_beam.counters(pipeline_result)
    rejected, filtered = builder_beam.read_details(self._details_dir)
    shutil.rmtree(self._details_dir, ignore_errors=True)
    self.rejected.extend(rejected)
    self.filtered.extend(filtered)
    listed = {builder_beam.SKIPPED: _count(rejected),
              builder_beam.TEXTS_FILTERED: dict(sorted(collections.Counter(
                  f.reason for f in filtered).items()))}
    if listed != self.pipeline_counters:
      # A runner that reports only attempted counts may count a retried
      # bundle twice; the counts stay the counters', and this says so.
      logging.warning("Beam counters %s differ from the records listed in the "
                      "side outputs %s", self.pipeline_counters, listed)

  def skip_counts(self) -> tuple[dict[str, int], dict[str, int]]:
    """(skipped records by reason, filtered texts by reason) of this build.

    In one process, counted from the lists. On Beam, the manifest rows the
    driver rejected plus the pipeline's counters for everything else.
    """
    if self.pipeline_counters is None:
      return _count(self.rejected), text_filter_lib.count(self.filtered)
    from jplaylist.data import builder_beam  # pylint: disable=g-import-not-at-top
    skipped = collections.Counter(r.reason for r in self._manifest_rejected)
    skipped.update(self.pipeline_counters[builder_beam.SKIPPED])
    filtered = self.pipeline_counters[builder_beam.TEXTS_FILTERED]
    return (dict(sorted(skipped.items())),
            {reason: filtered.get(reason, 0) for reason in text_filter_lib.REASONS})


def to_example(record: manifest_lib.Record, audio: np.ndarray, *,
               staging_dir: str | None) -> dict[str, Any]:
  """The stored example of a record, given its audio ([num_samples] int16).

  Args:
    record: the manifest record.
    audio: [num_samples] int16, its decoded samples.
    staging_dir: the build's staging folder ("split_file" layout): the samples
      are written there, to be joined into the split's audio file, and the
      example holds their count. None ("record" layout): the example holds them.
  """
  if staging_dir is None:
    samples = {"audio": audio}
  else:
    split_audio.stage(staging_dir, record.id, audio)
    samples = {"num_samples": np.int64(audio.shape[0])}
  return {
      "id": record.id,
      **samples,
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
                  audio_layout=config.audio_layout,
                  text_filter=(config.text_filter.fingerprint()
                               if config.text_filter is not None else None),
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
          text_filter: text_filter_lib.Settings | None = None,
          beam_runner: str | None = None,
          beam_options: Sequence[str] | None = None,
          audio_layout: str = "split_file",
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
    text_filter: the patent's text filters (`text_filter.Settings`: rules and
      an optional learned music-descriptive classifier), or None to keep every
      text. Filtered texts are counted by reason in the report and listed in
      `filtered_texts.jsonl`; a record left with no text is skipped
      (`all_texts_filtered`).
    beam_runner: build with Apache Beam on this runner ("DirectRunner" here,
      "DataflowRunner", "FlinkRunner", "SparkRunner"), or None for the
      single-process path. Needs requirements-beam.txt. The dataset and the
      report are the same either way (`num_threads` is then unused: the runner
      sets the parallelism).
    beam_options: Beam pipeline options, e.g. ["--runner=FlinkRunner",
      "--flink_master=host:8081"]; given alone, they too select Beam.
    audio_layout: "split_file" (default): the samples in one flat int16 file
      per split, so that a training window reads only its own bytes; or
      "record": inside each TFDS record, the earlier layout (module docstring).
    verbose: print the report.

  Returns:
    A BuildResult; `report` is also saved as `build_report.json` in `path`.
  """
  config = MusicTextConfig(name=name, manifest=os.path.abspath(manifest),
                           audio_dir=audio_dir, checks=checks,
                           split_fractions=split_fractions,
                           split_seed=split_seed, num_threads=num_threads,
                           text_filter=text_filter, audio_layout=audio_layout)
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
          download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS,
          beam_runner=beam_runner,
          beam_options=_pipeline_options(beam_runner, beam_options)))
  if audio_layout == "split_file":
    split_audio.join_staged(path, os.path.join(path, STAGING_DIR))
  kept = {split: info.num_examples for split, info in builder.info.splits.items()}
  skipped, texts_filtered = builder.skip_counts()
  report = {
      "dataset": name,
      "path": path,
      "manifest": config.manifest,
      "fingerprint": fingerprint,
      "sample_rate": checks.sample_rate,
      "audio_layout": audio_layout,
      "kept": dict(sorted(kept.items())),
      "kept_total": sum(kept.values()),
      "skipped": skipped,
      "skipped_total": sum(skipped.values()),
      "empty_annotations_dropped": builder.empty_annotations_dropped,
      "skipped_records": [r.as_dict() for r in
                          sorted(builder.rejected, key=lambda r: r.line)],
  }
  if text_filter is not None:
    report["text_filter"] = dataclasses.asdict(text_filter)
    report["texts_filtered"] = texts_filtered
    report["texts_filtered_total"] = sum(texts_filtered.values())
    with open(os.path.join(path, FILTERED_FILE), "w", encoding="utf-8") as f:
      for item in builder.filtered:
        f.write(json.dumps(item.as_dict(), ensure_ascii=False) + "\n")
  with open(report_path, "w") as f:
    json.dump(report, f, indent=1, ensure_ascii=False)
  if verbose:
    print(format_report(report))
  return BuildResult(path, report, cached=False)


def _pipeline_options(beam_runner: str | None, beam_options: Sequence[str] | None):
  """Beam's PipelineOptions, or None for the single-process path."""
  if beam_runner is None and beam_options is None:
    return None
  try:
    from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("building with Beam needs Apache Beam, an optional install: "
                      "`make beam`, or pip install --no-deps -r requirements-beam.txt") from e
  return pipeline_options.PipelineOptions(list(beam_options or ()))


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
  if "texts_filtered" in report:
    lines.append(f"  texts filtered {report['texts_filtered_total']}: " + ", ".join(
        f"{k} {v}" for k, v in report["texts_filtered"].items() if v)
                 + (f" (each listed in {FILTERED_FILE})" if report["texts_filtered_total"]
                    else "none"))
  if report["empty_annotations_dropped"]:
    lines.append(f"  empty annotations dropped from kept records: "
                 f"{report['empty_annotations_dropped']}")
  return "\n".join(lines)


def open_split(path: str, split: str) -> split_audio.SplitSource:
  """Random-access source over one split of a built dataset (no builder class needed).

  Args:
    path: the dataset's version folder (`BuildResult.path`).
    split: "train", "validation" or "test"; or a cross-validation fold of
      some of them, e.g. "train+validation+test:fold3of10:train"
      (`jplaylist.data.folds`).

  Returns:
    A `split_audio.SplitSource`: `source[i]` is record i with its `audio`
    [num_samples] int16, in either layout (a memory-mapped view in the
    "split_file" layout: slicing it reads only the slice). For a fold, a
    `folds.FoldSource` over such sources.
  """
  fold = folds.parse(split)
  if fold is not None:
    return folds.FoldSource(fold, [open_split(path, s) for s in fold.pool])
  builder = tfds.builder_from_directory(path)
  if split not in builder.info.splits:
    raise ValueError(f"{path} has no split {split!r}; it has "
                     f"{', '.join(builder.info.splits)}")
  return split_audio.SplitSource(path, split, builder.as_data_source(split),
                                 audio_in_records="audio" in builder.info.features)


def list_splits(path: str) -> list[str]:
  """The splits of a built dataset, in the order its builder wrote them."""
  return list(tfds.builder_from_directory(path).info.splits)


def sample_rate_of(path: str) -> int:
  return int(tfds.builder_from_directory(path).info.metadata["sample_rate"])
