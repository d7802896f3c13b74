"""The music-text builder's Apache Beam stages, for building on a cluster.

`builder.build(..., beam_runner=..., beam_options=...)` builds the same
dataset as the single-process path, with the work spread by a Beam runner
(the DirectRunner on one machine; Dataflow, Flink or Spark by pipeline
options). TFDS runs the pipeline: the builder's `_generate_examples` returns,
for each split, `SplitExamples`:

  records --> [FilterTexts] --> DecodeAudio --> (id, example) --> TFDS writer
                   |                 |
              filtered texts,    rejected records (side outputs, JSONL)
              all_texts_filtered

`FilterTexts` runs the patent's text filters on batches of records and loads
the learned classifier once per worker (`setup`); `DecodeAudio` decodes and
checks each file (`audio_io.load`) and, in the default "split_file" audio
layout, stages its samples in a file of their own, which the driver joins into
each split's audio file once the shards are written (`split_audio.py`), the
same files the single-process path writes. Every skip and every filtered text adds
one to a Beam counter named by its reason (namespace `COUNTER_NAMESPACE`,
`skipped.<reason>` and `texts_filtered.<reason>`), which the build report's
counts are read from after the run (`counters`, through TFDS's
`_process_pipeline_result` hook), beside the manifest rows the driver rejected
while reading the manifest to plan the splits. What a counter cannot carry
(the id, file, line and detail of a skipped record; the text of a filtered
one) goes to small JSONL side outputs under the build's folder, read back by
`read_details` into the report's `skipped_records` and `filtered_texts.jsonl`.

Workers read the audio and write the shards and the staged samples by path:
the manifest's audio, and the data directory, must be at the same path on
every worker.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os

import apache_beam as beam

from jplaylist.data import audio_io
from jplaylist.data import builder
from jplaylist.data import manifest as manifest_lib
from jplaylist.data import text_filter as text_filter_lib

COUNTER_NAMESPACE = "jplaylist.music_text"
SKIPPED = "skipped"                # counter name prefix: skipped.<reason>
TEXTS_FILTERED = "texts_filtered"  # texts_filtered.<reason>
_REJECTED_TAG = "rejected"
_FILTERED_TAG = "filtered"


def _count(kind: str, reason: str) -> None:
  beam.metrics.Metrics.counter(COUNTER_NAMESPACE, f"{kind}.{reason}").inc()


class FilterTexts(beam.DoFn):
  """Text filter over a batch of records: kept records, and side outputs.

  A record left with no text goes to the `rejected` output as
  `all_texts_filtered`; each filtered text to the `filtered` output, keyed by
  its record's manifest line and its place among that record's filtered
  texts, so that the list can be put back in manifest order.
  """

  def __init__(self, settings: text_filter_lib.Settings):
    self._settings = settings

  def setup(self):
    # Loads the classifier (and its sentence encoder, on first use) once per
    # worker, not per record.
    self._filter = text_filter_lib.TextFilter(self._settings)

  # No annotations on `process`: Beam would read them as type hints.
  def process(self, batch):
    kept_texts, filtered = self._filter.apply([(r.id, r.texts) for r in batch])
    line_of = {r.id: r.line for r in batch}
    place: collections.Counter = collections.Counter()
    for item in filtered:
      _count(TEXTS_FILTERED, item.reason)
      yield beam.pvalue.TaggedOutput(_FILTERED_TAG, json.dumps(
          {"line": line_of[item.record_id], "place": place[item.record_id],
           "item": item.as_dict()}))
      place[item.record_id] += 1
    for record, texts in zip(batch, kept_texts):
      if texts:
        yield dataclasses.replace(record, texts=texts)
        continue
      _count(SKIPPED, "all_texts_filtered")
      yield beam.pvalue.TaggedOutput(_REJECTED_TAG, json.dumps(manifest_lib.Rejected(
          id=record.id, audio=record.audio_path, reason="all_texts_filtered",
          detail=f"every text was filtered (listed in {builder.FILTERED_FILE})",
          line=record.line).as_dict()))


class DecodeAudio(beam.DoFn):
  """Decodes and checks a record's audio: `(id, example)`, or a rejected record.

  With a staging folder the samples are written there (`split_audio.stage`)
  and the example holds their count; without, the example holds them.
  """

  def __init__(self, checks: audio_io.AudioChecks, staging_dir: str | None):
    self._checks = checks
    self._staging_dir = staging_dir

  def process(self, record):
    try:
      audio = audio_io.load(record.audio_path, self._checks)
    except audio_io.InvalidAudio as e:
      _count(SKIPPED, e.reason)
      yield beam.pvalue.TaggedOutput(_REJECTED_TAG, json.dumps(manifest_lib.Rejected(
          id=record.id, audio=record.audio_path, reason=e.reason, detail=e.detail,
          line=record.line).as_dict()))
      return
    yield record.id, builder.to_example(record, audio, staging_dir=self._staging_dir)


class SplitExamples(beam.PTransform):
  """The examples of one split from its records; skips go to counters and files.

  Args:
    records: the split's records, as the manifest reader made them (texts
      not yet filtered).
    checks: acceptance rules for the audio.
    text_filter: the text filter's settings, or None.
    details_prefix: path prefix of the side outputs of this split.
    staging_dir: where to stage the decoded samples ("split_file" layout), or
      None to keep them in the records ("record" layout).
  """

  def __init__(self, records: list[manifest_lib.Record], *,
               checks: audio_io.AudioChecks,
               text_filter: text_filter_lib.Settings | None, details_prefix: str,
               staging_dir: str | None = None):
    super().__init__()
    self._staging_dir = staging_dir
    self._records = records
    self._checks = checks
    self._text_filter = text_filter
    self._details_prefix = details_prefix

  def expand(self, pbegin):
    # Create reshuffles its elements, so decoding spreads over the workers.
    records = pbegin | "Records" >> beam.Create(self._records)
    rejected, filtered = [], []
    if self._text_filter is not None:
      out = (records
             # Batches let the classifier encode many texts at once.
             | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=256)
             | "FilterTexts" >> beam.ParDo(FilterTexts(self._text_filter))
             .with_outputs(_REJECTED_TAG, _FILTERED_TAG, main="kept"))
      records = out.kept
      rejected.append(out[_REJECTED_TAG])
      filtered.append(out[_FILTERED_TAG])
    out = records | "DecodeAudio" >> beam.ParDo(DecodeAudio(self._checks, self._staging_dir)).with_outputs(
        _REJECTED_TAG, main="examples")
    rejected.append(out[_REJECTED_TAG])
    for name, pcolls in ((_REJECTED_TAG, rejected), (_FILTERED_TAG, filtered)):
      if pcolls:
        _ = (tuple(pcolls) | f"Flatten_{name}" >> beam.Flatten()
             | f"Write_{name}" >> beam.io.WriteToText(
                 f"{self._details_prefix}-{name}", file_name_suffix=".jsonl"))
    return out.examples


def counters(result) -> dict[str, dict[str, int]]:
  """The skip counters of a finished pipeline, summed over splits and steps.

  Args:
    result: the `PipelineResult` (TFDS hands it to the builder's
      `_process_pipeline_result`).

  Returns:
    {"skipped": {reason: count}, "texts_filtered": {reason: count}}; reasons
    never counted are absent. Committed values where the runner has them
    (they count each element once even when a bundle was retried), else
    attempted ones.
  """
  query = result.metrics().query(
      beam.metrics.MetricsFilter().with_namespace(COUNTER_NAMESPACE))
  out: dict[str, collections.Counter] = {SKIPPED: collections.Counter(),
                                         TEXTS_FILTERED: collections.Counter()}
  for counter in query["counters"]:
    kind, reason = counter.key.metric.name.split(".", 1)
    value = counter.committed if counter.committed is not None else counter.attempted
    out[kind][reason] += int(value)
  return {kind: dict(sorted(c.items())) for kind, c in out.items()}


def read_details(details_dir: str) -> tuple[list[manifest_lib.Rejected],
                                            list[text_filter_lib.Filtered]]:
  """The side outputs of every split: rejected records, and filtered texts in
  manifest order (by record line, then the filter's own order)."""
  rejected, filtered = [], []
  for path in sorted(glob.glob(os.path.join(details_dir, f"*-{_REJECTED_TAG}*.jsonl"))):
    with open(path, encoding="utf-8") as f:
      rejected.extend(manifest_lib.Rejected(**json.loads(line)) for line in f if line.strip())
  for path in sorted(glob.glob(os.path.join(details_dir, f"*-{_FILTERED_TAG}*.jsonl"))):
    with open(path, encoding="utf-8") as f:
      filtered.extend(json.loads(line) for line in f if line.strip())
  filtered.sort(key=lambda x: (x["line"], x["place"]))
  return (sorted(rejected, key=lambda r: r.line),
          [text_filter_lib.Filtered(**x["item"]) for x in filtered])
