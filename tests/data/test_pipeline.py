"""The grain input pipeline: source mixing, windowing, tokenization, state."""

import json
import os

import numpy as np
import pytest
import soundfile

from jplaylist.data import audio_io
from jplaylist.data import builder
from jplaylist.data import pipeline
from jplaylist.data import tokenizer
from jplaylist.data.manifest import SOURCES

RATE = 16_000
WINDOW_S = 1.0
ALL_KINDS = {"SF": ["tag one", "tag two"], "LF": ["a long sentence"],
             "PL": ["playlist"], "ASET": ["Music"]}


def _build(root, kinds_per_record, seconds=0.5 * WINDOW_S + 0.5):
  """A dataset whose record k has constant audio level (k + 1) / 64."""
  audio_dir = os.path.join(root, "audio")
  os.makedirs(audio_dir, exist_ok=True)
  rows = []
  for k, kinds in enumerate(kinds_per_record):
    level = (k + 1) / 64.0
    x = np.full(int(seconds * RATE), level, np.float32)
    x[::2] *= -1  # not constant: keeps a DC-offset file from looking odd
    soundfile.write(os.path.join(audio_dir, f"r{k}.wav"), x, RATE, subtype="PCM_16")
    rows.append({"id": f"r{k}", "audio": f"audio/r{k}.wav",
                 "texts": {s: ALL_KINDS[s] for s in kinds}})
  manifest = os.path.join(root, "manifest.jsonl")
  with open(manifest, "w") as f:
    f.write("\n".join(json.dumps(r) for r in rows))
  return builder.build(manifest=manifest, data_dir=os.path.join(root, "tfds"),
                       name="synthetic", split_fractions=(1.0, 0.0, 0.0),
                       checks=audio_io.AudioChecks(min_duration_s=0.1),
                       verbose=False).path


def _record_index(batch):
  """Record k is identified by its level, (k + 1) / 64."""
  return np.round(np.abs(batch["audio"][:, 0].astype(np.float64)) / 32768 * 64).astype(int) - 1


def _options(**overrides):
  base = dict(batch_size=16, seed=0, window_seconds=WINDOW_S, max_text_length=16)
  return pipeline.PipelineOptions(**{**base, **overrides})


@pytest.fixture(scope="module")
def mixed_kinds(tmp_path_factory):
  """Records 0-7 have all kinds, 8-11 lack PL, 12-15 have only ASET."""
  kinds = [SOURCES] * 8 + [("SF", "LF", "ASET")] * 4 + [("ASET",)] * 4
  return _build(str(tmp_path_factory.mktemp("mixed_kinds")), kinds)


def _draw(path, num_batches, **overrides):
  it = iter(pipeline.make_loader(path, "train", _options(**overrides)))
  return [next(it) for _ in range(num_batches)]


def test_batches_have_fixed_shapes_and_types(tiny_demo):
  result = tiny_demo[0]
  batch = _draw(result.path, 1, batch_size=4, window_seconds=10.0,
                max_text_length=32)[0]
  expected = {"audio": ((4, 160_000), np.int16), "audio_length": ((4,), np.int32),
              "text_ids": ((4, 32), np.int32), "text_mask": ((4, 32), np.int32),
              "source": ((4,), np.int32)}
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
  assert np.all((batch["audio_length"] > 0) & (batch["audio_length"] <= 160_000))
  # Audio crosses to the device as int16 and one length: 2 bytes a sample
  # and 4 an example, against float32 samples and a bool mask (5 a sample).
  audio_bytes = (batch["audio"].nbytes + batch["audio_length"].nbytes) / 4
  assert audio_bytes == 2 * 160_000 + 4
  assert (4 + 1) * 160_000 / audio_bytes == pytest.approx(2.5, rel=1e-4)
  # The samples are the stored ones: a window of a longer recording, or a
  # whole shorter one followed by zeros.
  source = builder.open_split(result.path, "train")
  stored = [np.asarray(source[i]["audio"]) for i in range(len(source))]
  for row, length in zip(batch["audio"], batch["audio_length"]):
    assert not row[length:].any()
    if length < len(row):
      assert any(np.array_equal(recording, row[:length]) for recording in stored)
    else:
      assert any(_contains(recording, row) for recording in stored)


def _contains(recording: np.ndarray, window: np.ndarray) -> bool:
  """Whether `window` is a contiguous slice of `recording`."""
  if len(window) > len(recording):
    return False
  # Candidate starts match the window's first 64 samples; then check whole.
  head = np.lib.stride_tricks.sliding_window_view(
      recording[:len(recording) - len(window) + 64], 64)
  starts = np.flatnonzero((head == window[:64]).all(axis=1))
  return any(np.array_equal(recording[s:s + len(window)], window) for s in starts)


def test_source_proportions_follow_the_weights(mixed_kinds):
  """Records with every kind: SF:LF:PL:ASET = 2:2:1:1 within 4.5 sigma."""
  batches = _draw(mixed_kinds, 250)
  record = np.concatenate([_record_index(b) for b in batches])
  source = np.concatenate([b["source"] for b in batches])
  full = source[record < 8]
  n = len(full)
  assert n > 1500
  expected = np.array([2, 2, 1, 1]) / 6
  observed = np.bincount(full, minlength=4) / n
  tolerance = 4.5 * np.sqrt(expected * (1 - expected) / n)
  assert np.all(np.abs(observed - expected) < tolerance), (observed, tolerance)


def test_missing_kinds_are_redrawn_never_dropped(mixed_kinds):
  batches = _draw(mixed_kinds, 250)
  record = np.concatenate([_record_index(b) for b in batches])
  source = np.concatenate([b["source"] for b in batches])
  # Every record keeps appearing, about equally often.
  counts = np.bincount(record, minlength=16)
  assert counts.min() > 0.6 * counts.mean()
  only_aset = source[record >= 12]
  assert np.all(only_aset == SOURCES.index("ASET"))
  no_pl = source[(record >= 8) & (record < 12)]
  assert not np.any(no_pl == SOURCES.index("PL"))
  # Among SF, LF, ASET the proportions stay 2:2:1.
  observed = np.bincount(no_pl, minlength=4)[[0, 1, 3]] / len(no_pl)
  expected = np.array([2, 2, 1]) / 5
  tolerance = 4.5 * np.sqrt(expected * (1 - expected) / len(no_pl))
  assert np.all(np.abs(observed - expected) < tolerance), (observed, tolerance)


def test_one_epoch_sees_every_record_once(mixed_kinds):
  loader = pipeline.make_loader(
      mixed_kinds, "train", _options(batch_size=5, num_epochs=1, drop_remainder=False))
  seen = np.concatenate([_record_index(b) for b in loader])
  assert sorted(seen.tolist()) == list(range(16))


def test_choose_source_zero_weight_only_kind_is_used():
  rng = np.random.default_rng(0)
  weights = np.array([1.0, 1.0, 0.0, 0.0])
  available = np.array([False, False, True, False])
  assert {pipeline.choose_source(available, weights, rng) for _ in range(20)} == {2}


def test_bad_source_weights_are_rejected(mixed_kinds):
  with pytest.raises(ValueError, match="unknown kinds"):
    pipeline.make_loader(mixed_kinds, "train", _options(source_weights={"XX": 1.0}))
  with pytest.raises(ValueError, match="positive sum"):
    pipeline.make_loader(mixed_kinds, "train", _options(source_weights={"SF": 0.0}))
  with pytest.raises(ValueError, match="512"):
    pipeline.make_loader(mixed_kinds, "train", _options(max_text_length=600))


def test_same_seed_same_batches_other_seed_other_batches(mixed_kinds):
  a, b = _draw(mixed_kinds, 3), _draw(mixed_kinds, 3)
  for x, y in zip(a, b):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  c = _draw(mixed_kinds, 3, seed=1)
  assert any(not np.array_equal(x["source"], z["source"]) or
             not np.array_equal(x["audio"], z["audio"]) for x, z in zip(a, c))


def test_resume_from_saved_state_continues_exactly(mixed_kinds):
  it = iter(pipeline.make_loader(mixed_kinds, "train", _options(batch_size=3)))
  for _ in range(4):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  resumed = iter(pipeline.make_loader(mixed_kinds, "train", _options(batch_size=3)))
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])


def _examples(batches):
  """Order-free fingerprints of every example in some batches."""
  return sorted((int(r), int(k), row.tobytes(), audio.tobytes())
                for b in batches
                for r, k, row, audio in zip(_record_index(b), b["source"],
                                            b["text_ids"], b["audio"]))


def test_worker_processes_draw_the_same_examples(mixed_kinds):
  """Grain deals records to workers round-robin, so batches group examples
  differently, but every example (window, text) is the one drawn serially."""
  serial = _draw(mixed_kinds, 4, batch_size=4)
  parallel = _draw(mixed_kinds, 4, batch_size=4, worker_count=2)
  assert _examples(serial) == _examples(parallel)
  again = _draw(mixed_kinds, 4, batch_size=4, worker_count=2)
  for x, y in zip(parallel, again):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])


def test_per_host_shards_are_disjoint_and_cover_the_split(mixed_kinds):
  seen = []
  for shard in range(2):
    loader = pipeline.make_loader(mixed_kinds, "train", _options(
        batch_size=4, num_epochs=1, shard_index=shard, shard_count=2,
        drop_remainder=False))
    seen.append(set(np.concatenate([_record_index(b) for b in loader]).tolist()))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(range(16))
  assert len(seen[0]) == len(seen[1]) == 8
  with pytest.raises(ValueError, match="shard_index"):
    pipeline.make_loader(mixed_kinds, "train", _options(shard_index=2, shard_count=2))


def test_short_recordings_are_padded_and_their_lengths_given(tmp_path):
  path = _build(str(tmp_path), [("SF",)] * 2, seconds=0.25)
  batch = _draw(path, 1, batch_size=2)[0]
  real = int(0.25 * RATE)
  np.testing.assert_array_equal(batch["audio_length"], [real, real])
  assert np.all(batch["audio"][:, real:] == 0)
  # Levels 1/64 and 2/64 of full scale, alternating in sign.
  assert np.all(np.abs(batch["audio"][:, :real]) >= 512)


def test_cut_window_is_a_uniform_contiguous_slice():
  audio = np.arange(-50, 52, dtype=np.int16)  # 102 samples, window 100: 3 starts
  rng = np.random.default_rng(0)
  starts = []
  for _ in range(300):
    window, length = pipeline.cut_window(audio, 100, rng)
    assert length == 100 and window.dtype == np.int16
    start = int(window[0]) + 50
    np.testing.assert_array_equal(window, audio[start:start + 100])
    starts.append(start)
  counts = np.bincount(starts, minlength=3)
  assert len(counts) == 3 and counts.min() > 70  # both edges reachable
  exact, length = pipeline.cut_window(audio[:100], 100, rng)
  assert length == 100 and exact[0] == -50
  short, length = pipeline.cut_window(audio[:30], 100, rng)
  assert length == 30 and np.array_equal(short[:30], audio[:30]) and not short[30:].any()
  with pytest.raises(ValueError, match="int16"):
    pipeline.cut_window(audio.astype(np.float32), 100, rng)


def test_tokenization_matches_the_reference_wordpiece_tokenizer(tiny_demo):
  from transformers import BertTokenizer  # the slow, pure-python reference
  reference = BertTokenizer(tokenizer.default_vocab_path(), do_lower_case=True)
  texts = ["A slow Baroque chorale played on a solo flute in G minor.",
           "flute, baroque, chorale, slow, minor", "Calm Baroque Flute",
           "Violin, fiddle", "Café Übermut: naïve 3/4 time"]
  ids, mask = tokenizer.encode(texts, max_length=24)
  for row, m, text in zip(ids, mask, texts):
    want = reference.encode(text, max_length=24, truncation=True)
    assert row[:len(want)].tolist() == want
    assert row[0] == 101 and want[-1] == 102  # [CLS] ... [SEP]
    assert np.all(row[len(want):] == 0) and m.sum() == len(want)
  long_ids, _ = tokenizer.encode(["word " * 100], max_length=8)
  assert long_ids[0, 0] == 101 and long_ids[0, -1] == 102
  # Pipeline texts decode back to annotations of the drawn source kind.
  result = tiny_demo[0]
  batch = _draw(result.path, 1, batch_size=4, max_text_length=64)[0]
  source = builder.open_split(result.path, "train")
  annotations = {SOURCES[k]: set() for k in range(4)}
  for i in range(len(source)):
    for kind, values in source[i]["texts"].items():
      annotations[kind] |= {v.decode() for v in values}
  lowered = {k: {reference.decode(reference.encode(t), skip_special_tokens=True)
                 for t in v} for k, v in annotations.items()}
  for row, kind in zip(batch["text_ids"], batch["source"]):
    text = reference.decode(row[row > 0].tolist(), skip_special_tokens=True)
    assert text in lowered[SOURCES[kind]]
