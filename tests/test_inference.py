"""The inference API: load a workdir, embed audio of any rate and length, embed text."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jplaylist import inference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 16_000


@pytest.fixture(scope="module")
def workdir(trained_workdir):
  return trained_workdir


@pytest.fixture(scope="module")
def model(workdir):
  return inference.load(workdir, batch_size=4)


def _tone(seconds, rate=RATE, freq=440.0):
  t = np.arange(int(seconds * rate)) / rate
  return (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
          ).astype(np.float32)


def test_windows_follow_the_documented_rule(model):
  window = model.window_samples
  assert window == 10 * RATE
  counts = {s: len(model.windows(np.ones(int(s * RATE), np.float32)))
            for s in (3, 10, 14, 15, 21, 25, 29)}
  assert counts == {3: 1, 10: 1, 14: 1, 15: 2, 21: 2, 25: 3, 29: 3}
  short = model.windows(np.ones(3 * RATE, np.float32))
  assert short[0, :3 * RATE].all() and not short[0, 3 * RATE:].any()


def _direct(model, windows, masks=None):
  """The model's own embed_audio on whole windows (the training path)."""
  return np.asarray(jax.jit(lambda v, a, m: model.model.apply(
      v, a, m, method=model.model.embed_audio))(model.variables, windows, masks))


def test_long_recordings_average_their_window_embeddings(model):
  recording = _tone(25.0)
  got = model.embed_audio([recording], RATE)
  windows, lengths = model.windows_and_lengths(recording)
  # The last window holds 5 s of audio and 5 s of padding, masked as in training.
  np.testing.assert_array_equal(lengths, [model.window_samples] * 2 + [5 * RATE])
  assert not windows[2, 5 * RATE:].any()
  # The reference embeds with a per-sample mask, the other form the model takes.
  masks = np.arange(model.window_samples)[None, :] < lengths[:, None]
  assert model.pool_valid_frames  # the demo config pools over valid frames
  direct = _direct(model, windows, masks)
  expected = direct.mean(axis=0)
  expected /= np.linalg.norm(expected)
  np.testing.assert_allclose(got[0], expected, atol=1e-5)
  assert got.shape == (1, 128) and got.dtype == np.float32


def test_short_clips_pool_over_their_valid_frames_as_in_training(model, workdir):
  short = _tone(3.0, freq=330.0)
  alone = model.embed_audio([short], RATE)[0]
  # Alone or among longer recordings in one call: the same embedding.
  among = model.embed_audio([_tone(25.0), short, _tone(12.0, freq=550.0)], RATE)[1]
  np.testing.assert_allclose(alone, among, atol=1e-5)
  window = np.zeros((1, model.window_samples), np.float32)
  window[0, :len(short)] = short
  mask = np.zeros_like(window, bool)
  mask[0, :len(short)] = True
  masked = _direct(model, window, mask)[0]
  np.testing.assert_allclose(alone, masked, atol=1e-5)
  # The padding, unmasked, would enter the mean: 70% silence changes the embedding.
  unmasked = _direct(model, window)[0]
  assert np.max(np.abs(masked - unmasked)) > 1e-3
  # A model whose config does not pool over valid frames embeds the padded window.
  config = model.config.copy_and_resolve_references()
  config.model.pool_valid_frames = False
  plain = inference.Model(config, model.variables, batch_size=4)
  assert not plain.pool_valid_frames
  np.testing.assert_allclose(plain.embed_audio([short], RATE)[0], unmasked, atol=1e-5)


def test_any_sample_rate_is_resampled(model):
  at_16k = _tone(12.0)
  at_44k = _tone(12.0, rate=44_100)
  a, b = model.embed_audio([at_16k], RATE), model.embed_audio([at_44k], 44_100)
  assert float(a[0] @ b[0]) > 0.999
  np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)


def test_a_large_call_compiles_once(model):
  rng = np.random.default_rng(0)
  recordings = [rng.normal(0, 0.1, int(s * RATE)).astype(np.float32)
                for s in rng.uniform(2, 31, size=11)]
  out = model.embed_audio(recordings, RATE)
  assert out.shape == (11, 128)
  model.embed_audio(recordings[:3], RATE)
  assert model._audio_fn._cache_size() == 1  # pylint: disable=protected-access
  texts = [f"a {w} piece for solo flute" for w in ("calm", "fast", "sad")] * 5
  text_out = model.embed_text(texts)
  assert text_out.shape == (15, 128)
  np.testing.assert_allclose(text_out[0], text_out[3], atol=1e-6)
  model.embed_text(texts[:2])
  assert model._text_fn._cache_size() == 1  # pylint: disable=protected-access


def test_bad_waveforms_are_rejected_with_their_index(model):
  with pytest.raises(ValueError, match="waveform 1: expected a non-empty 1-D"):
    model.embed_audio([_tone(1.0), np.zeros((2, 100), np.float32)], RATE)
  with pytest.raises(ValueError, match="waveform 0 has NaN"):
    model.embed_audio([np.full(100, np.nan, np.float32)], RATE)
  assert model.embed_audio([], RATE).shape == (0, 128)


def test_load_and_embed_in_a_fresh_process(workdir):
  script = (
      "import json, numpy as np\n"
      "from jplaylist import inference\n"
      f"model = inference.load({workdir!r})\n"
      "audio = model.embed_audio([np.sin(np.arange(n) / 7).astype(np.float32) * 0.2"
      " for n in (5000, 230000)], sample_rate=22050)\n"
      "text = model.embed_text(['calm baroque flute', 'a fast jig on the fiddle'])\n"
      "print(json.dumps({'audio': audio.tolist(), 'text': text.tolist()}))\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  audio, text = np.asarray(result["audio"]), np.asarray(result["text"])
  assert audio.shape == text.shape == (2, 128)
  np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
  # The same embeddings as in this process.
  here = inference.load(workdir).embed_text(["calm baroque flute", "a fast jig on the fiddle"])
  np.testing.assert_allclose(text, here, atol=1e-5)



def test_embed_launcher_writes_a_library_index(tiny_demo, workdir, model, tmp_path):
  import soundfile
  from jplaylist import library_index
  from jplaylist.data import audio_io, builder
  dataset = tiny_demo[0].path
  output = tmp_path / "library.npz"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  out = subprocess.run(
      [sys.executable, "-m", "launch.embed", f"--workdir={workdir}",
       f"--dataset={dataset}", "--split=train", f"--output={output}", "--chunk=3"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  index = library_index.load(str(output))
  source = builder.open_split(dataset, "train")
  records = {source[i]["id"].decode(): source[i] for i in range(len(source))}
  assert sorted(index.ids) == sorted(records)
  for record_id, embedding, attributes in zip(index.ids, index.embeddings, index.attributes):
    record = records[record_id]
    assert attributes == {**json.loads(record["attributes"]), "split": "train"}
    expected = model.embed_audio([audio_io.int16_to_float(np.asarray(record["audio"]))], RATE)
    np.testing.assert_allclose(embedding, expected[0], atol=1e-5)
  assert index.meta["workdir"] == os.path.abspath(workdir)
  # A folder: two readable files at another rate, one that is not audio.
  folder = tmp_path / "music"
  folder.mkdir()
  soundfile.write(folder / "a.wav", _tone(3.0, rate=22_050), 22_050)
  soundfile.write(folder / "b.flac", _tone(12.0, rate=22_050, freq=220.0), 22_050)
  (folder / "broken.wav").write_bytes(b"not audio at all")
  out = subprocess.run(
      [sys.executable, "-m", "launch.embed", f"--workdir={workdir}", f"--folder={folder}",
       f"--output={tmp_path / 'folder.npz'}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  folder_index = library_index.load(str(tmp_path / "folder.npz"))
  assert sorted(folder_index.ids) == ["a.wav", "b.flac"]
  assert "broken.wav" in out.stderr
  np.testing.assert_allclose(np.linalg.norm(folder_index.embeddings, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("num_items,num_parts", [(0, 1), (0, 3), (1, 2), (7, 3), (10, 4),
                                                 (598, 2), (5, 8)])
def test_blocks_cover_every_item_once_in_order(num_items, num_parts):
  blocks = [inference.block(num_items, k, num_parts) for k in range(num_parts)]
  assert [i for b in blocks for i in b] == list(range(num_items))
  assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
  with pytest.raises(ValueError, match="part 3"):
    inference.block(num_items, 3, 3)


def test_parts_of_a_folder_join_into_the_whole_index(model, tmp_path):
  import soundfile
  from jplaylist import library_index
  for i in range(5):
    soundfile.write(tmp_path / f"{i}.wav", _tone(2.0, freq=200.0 + 50 * i), RATE)
  whole, _ = inference.index_folder(model, str(tmp_path), progress=False)
  parts = [inference.index_folder(model, str(tmp_path), progress=False, part=(k, 2))[0]
           for k in range(2)]
  assert [len(p) for p in parts] == [2, 3]
  joined = library_index.concatenate(parts)
  assert joined.ids == whole.ids == [f"{i}.wav" for i in range(5)]
  assert joined.attributes == whole.attributes
  np.testing.assert_allclose(joined.embeddings, whole.embeddings, atol=1e-6)
  with pytest.raises(ValueError, match="share ids"):
    library_index.concatenate([parts[0], parts[0]])


def test_two_processes_write_the_index_one_process_writes(tiny_demo, workdir, model, tmp_path,
                                                          reserve_port):
  """launch.embed over jax.distributed (2 CPU processes, gloo): each embeds a
  block, process 0 joins them; the index equals one process's."""
  from jplaylist import library_index
  dataset = tiny_demo[0].path
  output = tmp_path / "library.npz"
  port = reserve_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  processes = [subprocess.Popen(
      [sys.executable, "-m", "launch.embed", f"--workdir={workdir}", f"--dataset={dataset}",
       "--split=train,validation,test", f"--output={output}", "--chunk=3",
       f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  try:
    outputs = [p.communicate(timeout=300)[0] for p in processes]
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
  assert [p.returncode for p in processes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
  one = inference.index_dataset(model, dataset, ["train", "validation", "test"], chunk=3,
                                progress=False)
  index = library_index.load(str(output))
  assert index.ids == one.ids and len(set(one.ids)) == len(one.ids) > 4
  assert index.attributes == one.attributes
  np.testing.assert_allclose(index.embeddings, one.embeddings, atol=1e-5)
  assert index.meta["num_processes"] == 2 and index.meta["workdir"] == os.path.abspath(workdir)
  sizes = [len(inference.block(len(one), k, 2)) for k in range(2)]
  for k in range(2):
    assert f"Process {k}: wrote {sizes[k]} embeddings" in outputs[k]
  assert sorted(os.listdir(tmp_path)) == ["library.npz"]  # the parts are gone
