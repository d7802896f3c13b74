r"""Log-mel throughput: the JAX frontend against librosa on the same clips.

  python -m bench.frontend                  # 32 clips of 10 s, 64 mels (the ResNet preset)
  python -m bench.frontend --preset=ast --num_clips=64

The clips are 10-s windows of a real recording that ships with music21
(looped to the requested count). Both sides compute the same thing: a 25 ms
Hann / 10 ms hop STFT, mel power and dB; the JAX side also averages to 400
frames. JAX runs one jit-compiled batched call (compile time reported
separately); librosa runs per clip, as a data loader would.
"""

import os
import time

from absl import app
from absl import flags
import jax
import librosa
import music21
import numpy as np
import soundfile
import soxr

from jplaylist.audio import frontend

_PRESET = flags.DEFINE_enum("preset", "resnet", list(frontend.PRESETS), "Frontend preset.")
_NUM_CLIPS = flags.DEFINE_integer("num_clips", 32, "Clips of 10 s in the batch.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repetitions (best is reported).")


def _clips(config, num_clips):
  path = os.path.join(os.path.dirname(music21.__file__), "audioSearch", "test_audio.wav")
  samples, rate = soundfile.read(path, dtype="float32")
  audio = soxr.resample(samples, rate, config.sample_rate).astype(np.float32)
  window = config.window_samples
  hop = max(1, (len(audio) - window) // 8)
  starts = [(i * hop) % (len(audio) - window) for i in range(num_clips)]
  return np.stack([audio[s:s + window] for s in starts])


def _best(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def main(argv):
  del argv
  config = frontend.decode(_PRESET.value)
  clips = _clips(config, _NUM_CLIPS.value)
  n = len(clips)
  fn = jax.jit(lambda a: frontend.log_mel(a, config))
  device_clips = jax.device_put(clips)
  start = time.perf_counter()
  fn(device_clips).block_until_ready()
  compile_s = time.perf_counter() - start
  jax_s = _best(lambda: fn(device_clips).block_until_ready(), _REPEATS.value)

  def run_librosa():
    for clip in clips:
      power = librosa.feature.melspectrogram(
          y=clip, sr=config.sample_rate, n_fft=config.n_fft,
          win_length=config.window_length, hop_length=config.hop_length,
          window="hann", center=config.center, pad_mode="constant", power=2.0,
          n_mels=config.num_mels, htk=config.htk,
          norm="slaney" if config.slaney_norm else None)
      librosa.power_to_db(power, ref=1.0, amin=config.amin, top_db=None)
  run_librosa()  # warm caches (filterbank, FFT plans)
  librosa_s = _best(run_librosa, _REPEATS.value)
  seconds = n * config.window_seconds
  print(f"preset {_PRESET.value}: {n} clips x {config.window_seconds:.0f} s, "
        f"{config.num_mels} mels, output {fn(device_clips).shape[1:]} per clip; "
        f"device {jax.devices()[0].device_kind}, {os.cpu_count()} CPU cores")
  print(f"jax (jit, batched): {n / jax_s:9.1f} clips/s  ({seconds / jax_s:8.0f} s of audio/s)"
        f"  compile {compile_s:.2f} s")
  print(f"librosa (per clip): {n / librosa_s:9.1f} clips/s  ({seconds / librosa_s:8.0f} s of audio/s)")
  print(f"jax / librosa: {librosa_s / jax_s:.2f}x")


if __name__ == "__main__":
  app.run(main)
