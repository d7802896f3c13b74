"""The built-in demo corpus: music21 compositions rendered under many ensembles.

`prepare()` picks compositions from the music21 corpus (Bach chorales,
Palestrina masses, Monteverdi madrigals, Trecento songs, fiddle tunes, Irish
tunes, German and Chinese folk songs, Classical quartets, Romantic pieces and
a Joplin rag), renders each several times (`renditions_per_work`) with a
different ensemble, SoundFont, tempo and key, passes each rendition through a
random recording chain (`augment`: spectral tilt, synthetic-room reverb,
noise at a random SNR, gain; detuning and velocity curves at render time),
writes FLAC files and a JSONL manifest with structured attributes and text
annotations of all four source kinds, and builds the TFDS dataset with the
same builder that users' own data goes through (`jplaylist.data.builder`).

Tempo classes are far apart so they can be heard: slow is 48-72 BPM and fast
126-160 BPM (there is no "moderate" class). Mood follows tempo class and mode
(`annotations.MOODS`: slow minor sad, slow major calm, fast minor tense, fast
major happy).

SoundFonts. Each rendition is played with one of `render.SOUNDFONTS`
(TimGM6mb or Merlin; the renditions of a composition alternate between them)
and records it as the attribute `soundfont`.

Splits are by composition: every rendition of a composition lands in the same
split, chosen per collection so each style appears in every split. Besides
train, validation and test there is a held-out-timbre split,
`test_heldout_timbre`, under this rule:

  * the held-out (SoundFont, GM program) pairs are Merlin x the programs of
    `HELDOUT_INSTRUMENTS` (flute, violin, piano, guitar);
  * train, validation and test never hear them: a Merlin rendition there is
    played only by an ensemble none of whose players is a held-out
    instrument (those instruments are heard in training through TimGM6mb,
    and every instrument family is still heard in Merlin);
  * `test_heldout_timbre` holds `heldout_renditions_per_work` more
    renditions of each test composition (so compositions unseen in
    training), rendered with Merlin by an ensemble whose lead, which always
    plays, is a held-out instrument.

Long-form and playlist texts of every split but train come from held-out
templates (`annotations.annotate(heldout=True)`), so evaluations also use
wording training never saw. Everything is deterministic from `seed`;
rendering runs on `num_workers` processes with a progress bar, and is cached
under `data_dir/demo_source/<fingerprint>`, so a second call with the same
settings reuses the files and the dataset.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import traceback
import zlib

import numpy as np
import soundfile
import tqdm

from jplaylist.data import audio_io
from jplaylist.data import builder as builder_lib
from jplaylist.data import ontology
from jplaylist.data.demo import annotations
from jplaylist.data.demo import augment as augment_lib
from jplaylist.data.demo import catalogue
from jplaylist.data.demo import instruments as instruments_lib
from jplaylist.data.demo import render as render_lib

# Bump when rendering or annotation changes, so cached corpora are rebuilt.
GENERATOR_VERSION = 3

TEMPO_RANGES = {"slow": (48.0, 72.0), "fast": (126.0, 160.0)}
SOUNDFONTS = ("TimGM6mb", "Merlin")
HELDOUT_SOUNDFONT = "Merlin"
HELDOUT_INSTRUMENTS = ("flute", "violin", "piano", "guitar")
HELDOUT_SPLIT = "test_heldout_timbre"
SPLITS = ("train", "validation", "test", HELDOUT_SPLIT)
# Corpus sizes of `launch.prepare_data --corpus=...` (recordings outside the
# held-out-timbre split).
CORPUS_SIZES = {"default": 600, "large": 3000}
_MAJOR_NAMES = ("C", "D-flat", "D", "E-flat", "E", "F", "F-sharp", "G", "A-flat",
                "A", "B-flat", "B")
_MINOR_NAMES = ("C", "C-sharp", "D", "E-flat", "E", "F", "F-sharp", "G", "G-sharp",
                "A", "B-flat", "B")


@dataclasses.dataclass(frozen=True)
class DemoSettings:
  """What the demo corpus contains. Any change rebuilds it.

  Attributes:
    num_recordings: recordings of train, validation and test (some fewer if
      a score fails to parse).
    renditions_per_work: recordings of each composition, each with another
      ensemble, tempo and key.
    heldout_renditions_per_work: extra renditions of each test composition
      for the held-out-timbre split (see the module docstring); 0: none.
    seed: drives every choice.
    sample_rate: Hz.
    min_seconds, max_seconds: excerpt length range; a short composition may
      give a shorter recording.
    split_fractions: (validation, test) share of each collection's
      compositions; the rest is train.
    drop_probability: chance that a recording lacks each of LF, PL, ASET.
    collections: names from `catalogue.COLLECTIONS`; empty means all.
    augment: pass renditions through random recording chains.
    augment_ranges: what those chains are drawn from.
  """

  num_recordings: int = CORPUS_SIZES["default"]
  renditions_per_work: int = 2
  heldout_renditions_per_work: int = 2
  seed: int = 0
  sample_rate: int = 16_000
  min_seconds: float = 12.0
  max_seconds: float = 24.0
  split_fractions: tuple[float, float] = (0.15, 0.15)
  drop_probability: float = 0.1
  collections: tuple[str, ...] = ()
  augment: bool = True
  augment_ranges: augment_lib.ChainRanges = augment_lib.ChainRanges()

  def fingerprint(self) -> str:
    payload = json.dumps({**dataclasses.asdict(self), "v": GENERATOR_VERSION},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class _Rendition:
  recording_id: str
  split: str
  ensemble: str
  soundfont: str
  tempo_class: str
  beats_per_minute: float
  transpose: int
  max_seconds: float
  seed: int
  detune_cents: float = 0.0
  velocity_gamma: float = 1.0
  chain: augment_lib.Chain | None = None


@dataclasses.dataclass(frozen=True)
class _Task:
  work: catalogue.Work
  split: str
  renditions: tuple[_Rendition, ...]


def _rng(*keys) -> np.random.Generator:
  return np.random.default_rng([zlib.crc32(str(k).encode()) for k in keys])


def plan(settings: DemoSettings) -> list[_Task]:
  """Which compositions, in which split, played how. Pure and deterministic."""
  names = settings.collections or tuple(catalogue.COLLECTIONS)
  rng = _rng("plan", settings.seed)
  num_works = int(np.ceil(settings.num_recordings / settings.renditions_per_work))
  pools = {n: [catalogue.list_works(n)[i] for i in
               rng.permutation(len(catalogue.list_works(n)))] for n in names}
  chosen: dict[str, list[catalogue.Work]] = {n: [] for n in names}
  total = 0
  while total < num_works and any(pools.values()):
    for name in names:  # round robin keeps the styles balanced
      if pools[name] and total < num_works:
        chosen[name].append(pools[name].pop())
        total += 1
  # Splits by composition, stratified by collection. Each collection gets its
  # share of validation and test works, rounded; the rounding error carries
  # over to the next collection, so small corpora still fill every split.
  fractions = np.asarray(settings.split_fractions, dtype=np.float64)
  carry = np.zeros(2)
  assignments = []
  for name in names:
    works = chosen[name]
    exact = fractions * len(works) + carry
    held_out = np.floor(exact + 0.5).astype(int)
    while held_out.sum() > max(len(works) - 1, 1 if len(works) else 0):
      held_out[int(np.argmax(held_out - exact))] -= 1  # drop the most rounded-up
    carry = exact - held_out
    num_validation, num_test = int(held_out[0]), int(held_out[1])
    for index, work in enumerate(works):
      assignments.append((work, "test" if index < num_test else
                          "validation" if index < num_test + num_validation
                          else "train"))
  tasks = [_Task(work, split, _renditions(work, split, settings))
           for work, split in assignments]
  # Trim the last renditions so the total is exactly num_recordings; the
  # held-out-timbre renditions of kept test compositions are extra.
  trimmed, remaining = [], settings.num_recordings
  for task in tasks:
    main = [r for r in task.renditions if r.split != HELDOUT_SPLIT][:max(0, remaining)]
    remaining -= len(main)
    if main:
      extra = [r for r in task.renditions if r.split == HELDOUT_SPLIT]
      trimmed.append(dataclasses.replace(task, renditions=tuple(main + extra)))
  return trimmed


def plays_heldout_timbre(soundfont: str, ensemble_name: str) -> bool:
  """Whether an ensemble in a SoundFont may play a held-out (SoundFont, program).

  True when the SoundFont is the held-out one and any player of the ensemble
  is one of HELDOUT_INSTRUMENTS. Such renditions never enter train,
  validation or test.
  """
  players = instruments_lib.ENSEMBLES[ensemble_name].players
  return soundfont == HELDOUT_SOUNDFONT and bool(set(players) & set(HELDOUT_INSTRUMENTS))


def _renditions(work: catalogue.Work, split: str,
                settings: DemoSettings) -> tuple[_Rendition, ...]:
  """How a composition is played: its main renditions, then held-out ones."""
  work_rng = _rng("work", settings.seed, work.id)
  ensembles = sorted(instruments_lib.ENSEMBLES)
  first_soundfont = int(work_rng.integers(len(SOUNDFONTS)))
  plans = [(split, SOUNDFONTS[(first_soundfont + r) % len(SOUNDFONTS)])
           for r in range(settings.renditions_per_work)]
  if split == "test":
    plans += [(HELDOUT_SPLIT, HELDOUT_SOUNDFONT)] * settings.heldout_renditions_per_work
  used: set[str] = set()
  renditions = []
  for r, (rendition_split, soundfont) in enumerate(plans):
    if rendition_split == HELDOUT_SPLIT:
      allowed = [e for e in ensembles
                 if instruments_lib.ENSEMBLES[e].lead in HELDOUT_INSTRUMENTS]
    else:
      allowed = [e for e in ensembles if not plays_heldout_timbre(soundfont, e)]
    fresh = [e for e in allowed if e not in used] or allowed
    ensemble = fresh[int(work_rng.integers(len(fresh)))]
    used.add(ensemble)
    tempo_class = sorted(TEMPO_RANGES)[int(work_rng.integers(len(TEMPO_RANGES)))]
    ranges = settings.augment_ranges
    renditions.append(_Rendition(
        recording_id=(f"{work.id}-h{r - settings.renditions_per_work}"
                      if rendition_split == HELDOUT_SPLIT else f"{work.id}-r{r}"),
        split=rendition_split,
        ensemble=ensemble,
        soundfont=soundfont,
        tempo_class=tempo_class,
        beats_per_minute=round(float(work_rng.uniform(*TEMPO_RANGES[tempo_class])), 1),
        transpose=int(work_rng.integers(-5, 7)),
        max_seconds=round(float(work_rng.uniform(settings.min_seconds,
                                                 settings.max_seconds)), 2),
        seed=int(work_rng.integers(2**31)),
        detune_cents=(round(float(work_rng.uniform(*ranges.detune_cents)), 1)
                      if settings.augment else 0.0),
        velocity_gamma=(round(float(work_rng.uniform(*ranges.velocity_gamma)), 3)
                        if settings.augment else 1.0),
        chain=(augment_lib.sample_chain(work_rng, ranges) if settings.augment else None)))
  return tuple(renditions)


def key_name(tonic: str, mode: str, transpose: int) -> tuple[str, str]:
  """(tonic spelled for text, "F-sharp minor") after transposition."""
  pc = (catalogue.pitch_class(tonic) + transpose) % 12
  tonic_name = (_MINOR_NAMES if mode == "minor" else _MAJOR_NAMES)[pc]
  return tonic_name, f"{tonic_name} {mode}"


def _render_task(args) -> tuple[list[dict], list[str]]:
  """Parses one composition and renders its renditions (runs in a worker)."""
  task, audio_dir, settings = args
  rows, errors = [], []
  collection = catalogue.COLLECTIONS[task.work.collection]
  try:
    slowest = min(r.beats_per_minute for r in task.renditions)
    longest = max(r.max_seconds for r in task.renditions)
    score = catalogue.parse(task.work, max_quarters=longest * slowest / 60.0 * 4 + 8)
  except Exception:  # pylint: disable=broad-except
    return [], [f"{task.work.id}: could not parse: "
                f"{traceback.format_exc(limit=1).strip().splitlines()[-1]}"]
  for rendition in task.renditions:
    try:
      audio, part_instruments = render_lib.render(
          score, render_lib.Performance(
              rendition.ensemble, rendition.beats_per_minute, rendition.transpose,
              rendition.max_seconds, rendition.seed, soundfont=rendition.soundfont,
              detune_cents=rendition.detune_cents,
              velocity_gamma=rendition.velocity_gamma), settings.sample_rate)
      if rendition.chain is not None:
        audio = augment_lib.apply_chain(audio, settings.sample_rate, rendition.chain)
    except Exception:  # pylint: disable=broad-except
      errors.append(f"{rendition.recording_id}: could not render: "
                    f"{traceback.format_exc(limit=1).strip().splitlines()[-1]}")
      continue
    tonic, key = key_name(score.tonic, score.mode, rendition.transpose)
    ensemble = instruments_lib.ENSEMBLES[rendition.ensemble]
    distinct = list(dict.fromkeys(part_instruments))
    attributes = {
        "composition": task.work.id,
        "collection": collection.name,
        "style": collection.style,
        "genre": score.genre,
        "composer": score.composer,
        "title": score.title,
        "sacred": collection.sacred,
        "ensemble": rendition.ensemble,
        "solo": ensemble.solo,
        "lead_instrument": ensemble.lead,
        "instruments": distinct,
        "part_instruments": part_instruments,
        "instrument_families": list(dict.fromkeys(
            instruments_lib.INSTRUMENTS[n].family for n in distinct)),
        "ensemble_size": 1 if ensemble.solo else len(part_instruments),
        "tempo_class": rendition.tempo_class,
        "tempo_bpm": rendition.beats_per_minute,
        "tonic": tonic,
        "mode": score.mode,
        "key": key,
        "metre": score.metre,
        "metre_class": score.metre_class,
        "transpose": rendition.transpose,
        "duration_s": round(len(audio) / settings.sample_rate, 3),
        "soundfont": rendition.soundfont,
        "augmentation": {
            "detune_cents": rendition.detune_cents,
            "velocity_gamma": rendition.velocity_gamma,
            **(rendition.chain.as_dict() if rendition.chain is not None else {})},
    }
    attributes["mood"] = annotations.mood_of(attributes)
    texts = annotations.annotate(attributes, _rng("text", settings.seed,
                                                  rendition.recording_id),
                                 drop_probability=settings.drop_probability,
                                 heldout=rendition.split != "train")
    filename = f"{rendition.recording_id}.flac"
    soundfile.write(os.path.join(audio_dir, filename), audio, settings.sample_rate,
                    format="FLAC", subtype="PCM_16")
    rows.append({"id": rendition.recording_id, "audio": f"audio/{filename}",
                 "split": rendition.split, "group": task.work.id, "texts": texts,
                 "attributes": attributes})
  return rows, errors


def render_sources(source_dir: str, settings: DemoSettings, num_workers: int,
                   ontology_names: set[str]) -> str:
  """Renders the corpus into `source_dir`; returns the manifest path."""
  manifest_path = os.path.join(source_dir, "manifest.jsonl")
  if os.path.exists(os.path.join(source_dir, "DONE")):
    return manifest_path
  audio_dir = os.path.join(source_dir, "audio")
  os.makedirs(audio_dir, exist_ok=True)
  tasks = plan(settings)
  work = [(task, audio_dir, settings) for task in tasks]
  rows, errors = [], []
  total = sum(len(t.renditions) for t in tasks)
  progress = tqdm.tqdm(total=total, desc="Rendering demo corpus", unit="rec",
                       file=sys.stdout, mininterval=1.0)
  if num_workers > 1:
    # spawn: workers must not inherit a parent's JAX or thread state.
    with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
      for task_rows, task_errors in pool.imap_unordered(_render_task, work):
        rows += task_rows
        errors += task_errors
        progress.update(len(task_rows) + len(task_errors))
  else:
    for item in work:
      task_rows, task_errors = _render_task(item)
      rows += task_rows
      errors += task_errors
      progress.update(len(task_rows) + len(task_errors))
  progress.close()
  for error in errors:
    print(f"  skipped {error}")
  unknown = {label for row in rows for label in row["texts"].get("ASET", ())
             } - ontology_names
  if unknown:
    raise ValueError(f"ASET labels missing from the ontology: {sorted(unknown)}")
  rows.sort(key=lambda row: row["id"])
  with open(manifest_path, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  with open(os.path.join(source_dir, "settings.json"), "w") as f:
    json.dump({**dataclasses.asdict(settings), "generator_version": GENERATOR_VERSION,
               "render_errors": errors}, f, indent=1)
  open(os.path.join(source_dir, "DONE"), "w").close()
  return manifest_path


def prepare(data_dir: str, settings: DemoSettings = DemoSettings(), *,
            name: str = "demo", num_workers: int = 2,
            ontology_path: str | None = None, force: bool = False,
            verbose: bool = True) -> builder_lib.BuildResult:
  """Renders (or reuses) the demo corpus and builds its TFDS dataset.

  Args:
    data_dir: root for the rendered sources (`demo_source/<fingerprint>`) and
      the TFDS data (`music_text/<name>/1.0.0`).
    settings: what to render.
    name: the dataset's name under `music_text/`.
    num_workers: rendering processes.
    ontology_path: AudioSet ontology JSON (default: `ontology.default_path()`).
    force: re-render and rebuild even if cached.
    verbose: print progress and the build report.

  Returns:
    The builder's result: dataset path, report, whether it was cached.
  """
  source_dir = os.path.join(data_dir, "demo_source", settings.fingerprint())
  if force and os.path.exists(source_dir):
    shutil.rmtree(source_dir)
  manifest_path = render_sources(source_dir, settings, num_workers,
                                 ontology.names(ontology_path))
  return builder_lib.build(
      manifest=manifest_path, data_dir=data_dir, name=name,
      checks=audio_io.AudioChecks(sample_rate=settings.sample_rate),
      force=force, verbose=verbose)


def load_attributes(example: dict) -> dict:
  """Decodes the JSON attributes of a TFDS example."""
  raw = example["attributes"]
  return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def summarize(dataset_path: str) -> str:
  """What a built demo dataset holds: counts by split, style, ensemble and source."""
  lines = []
  for split in SPLITS:
    try:
      source = builder_lib.open_split(dataset_path, split)
    except ValueError:
      continue
    styles, families, ensembles, kinds, soundfonts = (
        collections.Counter() for _ in range(5))
    compositions, seconds = set(), 0.0
    for i in range(len(source)):
      example = source[i]
      attributes = load_attributes(example)
      styles[attributes["style"]] += 1
      ensembles[attributes["ensemble"]] += 1
      soundfonts[attributes["soundfont"]] += 1
      families.update(attributes["instrument_families"])
      compositions.add(attributes["composition"])
      seconds += attributes["duration_s"]
      kinds.update(k for k, v in example["texts"].items() if len(v))
    lines.append(f"{split}: {len(source)} recordings of {len(compositions)} "
                 f"compositions, {seconds / 60:.1f} min of audio")
    for title, counter in (("styles", styles), ("instrument families", families),
                           ("ensembles", ensembles), ("soundfonts", soundfonts),
                           ("text sources", kinds)):
      lines.append(f"  {title}: " + ", ".join(f"{k} {v}" for k, v in counter.most_common()))
  return "\n".join(lines)
