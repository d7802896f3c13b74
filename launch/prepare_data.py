r"""Builds a music-text dataset: the built-in demo corpus or your own folder.

The demo corpus (music21 compositions rendered with a General MIDI SoundFont):

  python -m launch.prepare_data --dataset=demo --data_dir=data
  python -m launch.prepare_data --dataset=demo --corpus=large     # 3000 recordings
  python -m launch.prepare_data --dataset=demo --num_recordings=1000

Your own audio with a JSONL or CSV manifest of annotations (format in
jplaylist/data/manifest.py):

  python -m launch.prepare_data --dataset=folder --name=my_corpus \
      --manifest=/path/to/manifest.jsonl --audio_dir=/path/to/audio

Web-mined text can pass the patent's text filters on the way in (rules, then a
learned music-descriptive classifier from `launch.train_text_filter`):

  python -m launch.prepare_data --dataset=folder --name=my_corpus \
      --manifest=/path/to/manifest.jsonl --text_filter=classifier \
      --text_filter_classifier=/tmp/text_filter.npz --text_filter_threshold=0.5

The same folder build on Apache Beam (`make beam`: requirements-beam.txt):
the DirectRunner here, or a cluster by pipeline options (README, "Your own data"):

  python -m launch.prepare_data --dataset=folder --name=my_corpus \
      --manifest=/path/to/manifest.jsonl --beam_runner=DirectRunner \
      --beam_options="--direct_num_workers=2 --direct_running_mode=multi_processing"

Both print a report of what was kept and what was skipped (and why), saved as
build_report.json beside the data. This file is intentionally kept short.
"""

import shlex

from absl import app
from absl import flags
from absl import logging

from jplaylist.data import audio_io
from jplaylist.data import builder
from jplaylist.data import text_filter
from jplaylist.data.demo import corpus

_DATASET = flags.DEFINE_enum("dataset", "demo", ["demo", "folder"],
                             "Build the demo corpus or a folder of your own audio.")
_DATA_DIR = flags.DEFINE_string("data_dir", "data", "TFDS data directory.")
_NAME = flags.DEFINE_string("name", None, "Dataset name (default: 'demo' for the "
                            "demo corpus; required for --dataset=folder).")
_FORCE = flags.DEFINE_bool("force", False, "Rebuild even if an identical build exists.")
_SAMPLE_RATE = flags.DEFINE_integer("sample_rate", 16_000, "Stored sample rate, Hz.")
# Demo corpus.
_CORPUS = flags.DEFINE_enum(
    "corpus", "default", list(corpus.CORPUS_SIZES),
    "Demo: corpus size, " + ", ".join(f"{k} {v} recordings" for k, v in
                                      corpus.CORPUS_SIZES.items())
    + " (plus the held-out-timbre split).")
_NUM_RECORDINGS = flags.DEFINE_integer("num_recordings", None,
                                       "Demo: recordings; overrides --corpus.")
_RENDITIONS = flags.DEFINE_integer("renditions_per_work", 2,
                                   "Demo: renditions of each composition.")
_HELDOUT_RENDITIONS = flags.DEFINE_integer(
    "heldout_renditions_per_work", 2,
    f"Demo: renditions of each test composition in {corpus.HELDOUT_SPLIT}.")
_AUGMENT = flags.DEFINE_bool("augment", True,
                             "Demo: random recording chains, detuning, velocity curves.")
_SEED = flags.DEFINE_integer("seed", 0, "Demo: seed of every choice.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Demo: rendering processes.")
_ONTOLOGY = flags.DEFINE_string("ontology", None, "AudioSet music ontology JSON "
                                "(default: $JPLAYLIST_ONTOLOGY or ../shared/data).")
# Your own folder.
_MANIFEST = flags.DEFINE_string("manifest", None, "Folder: JSONL or CSV manifest.")
_AUDIO_DIR = flags.DEFINE_string("audio_dir", None,
                                 "Folder: base of relative audio paths.")
_MIN_DURATION = flags.DEFINE_float("min_duration", 1.0, "Folder: shortest kept, s.")
_DOWNMIX = flags.DEFINE_bool("downmix", False,
                             "Folder: average multi-channel files instead of skipping.")
_TEXT_FILTER = flags.DEFINE_enum(
    "text_filter", "none", ["none", "rules", "classifier"],
    "Folder: keep every text, apply the rules (length, URLs, boilerplate, non-text, "
    "near-duplicates), or the rules and the learned classifier. Filtered texts are "
    "counted in the report and listed in filtered_texts.jsonl.")
_TEXT_FILTER_CLASSIFIER = flags.DEFINE_string(
    "text_filter_classifier", None, "Folder: the classifier (.npz from launch.train_text_filter).")
_TEXT_FILTER_THRESHOLD = flags.DEFINE_float(
    "text_filter_threshold", 0.5, "Folder: probability of describing music a text needs.")
_BEAM_RUNNER = flags.DEFINE_string(
    "beam_runner", None, "Folder: build with Apache Beam on this runner (DirectRunner, "
    "DataflowRunner, FlinkRunner, SparkRunner) instead of in one process; needs "
    "requirements-beam.txt.")
_BEAM_OPTIONS = flags.DEFINE_string(
    "beam_options", None, "Folder: Beam pipeline options in one string, as on a command "
    "line, e.g. '--flink_master=host:8081 --parallelism=32'; alone, they select Beam too.")


def _text_filter_settings():
  if _TEXT_FILTER.value == "none":
    return None
  if _TEXT_FILTER.value == "classifier" and not _TEXT_FILTER_CLASSIFIER.value:
    raise app.UsageError("--text_filter=classifier needs --text_filter_classifier")
  return text_filter.Settings(
      classifier=(_TEXT_FILTER_CLASSIFIER.value if _TEXT_FILTER.value == "classifier"
                  else None),
      threshold=_TEXT_FILTER_THRESHOLD.value)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # TFDS logs every file it opens at INFO
  if _DATASET.value == "demo":
    settings = corpus.DemoSettings(
        num_recordings=(_NUM_RECORDINGS.value if _NUM_RECORDINGS.value is not None
                        else corpus.CORPUS_SIZES[_CORPUS.value]),
        renditions_per_work=_RENDITIONS.value,
        heldout_renditions_per_work=_HELDOUT_RENDITIONS.value, seed=_SEED.value,
        sample_rate=_SAMPLE_RATE.value, augment=_AUGMENT.value)
    result = corpus.prepare(_DATA_DIR.value, settings, name=_NAME.value or "demo",
                            num_workers=_WORKERS.value,
                            ontology_path=_ONTOLOGY.value, force=_FORCE.value)
    print("\n" + corpus.summarize(result.path))
  else:
    if not _MANIFEST.value or not _NAME.value:
      raise app.UsageError("--dataset=folder needs --manifest and --name")
    result = builder.build(
        manifest=_MANIFEST.value, data_dir=_DATA_DIR.value, name=_NAME.value,
        audio_dir=_AUDIO_DIR.value, force=_FORCE.value,
        text_filter=_text_filter_settings(), beam_runner=_BEAM_RUNNER.value,
        beam_options=(shlex.split(_BEAM_OPTIONS.value)
                      if _BEAM_OPTIONS.value is not None else None),
        checks=audio_io.AudioChecks(sample_rate=_SAMPLE_RATE.value,
                                    min_duration_s=_MIN_DURATION.value,
                                    downmix=_DOWNMIX.value))
  print(f"\nDataset ready: {result.path}"
        f"{' (cached)' if result.cached else ''}\n"
        f"Build report: {result.path}/{builder.REPORT_FILE}")


if __name__ == "__main__":
  app.run(main)
