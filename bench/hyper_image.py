r"""Hyper-image throughput: the JAX features (jit, batched) against librosa per clip.

  python -m bench.hyper_image                       # 32 clips of 10 s at 16 kHz
  python -m bench.hyper_image --num_clips=64 --batch_size=16

The clips are 10-s windows of a real recording that ships with music21
(looped to the requested count), at the demo corpus's 16 kHz. Both sides
compute the same image (`jplaylist/audio/hyper_image.py`: chroma, cyclic
tempogram, log-mel, MFCC, spectral contrast and tonnetz, normalised per
block). librosa runs per clip, as an input worker would, and is given every
shortcut its API allows: one STFT per clip, passed as `S=` to the mel,
chroma and contrast features; the log-mel reused for MFCC and onset
strength; the tempogram folded with the same matrix. librosa runs with one
BLAS thread (threadpoolctl), as input workers do, one per core: left to
OpenBLAS's own threads on a shared 2-core machine it ran 4x slower. Its
rate is therefore per core, and the last ratio compares JAX on all cores
with librosa on as many workers as there are cores. JAX runs jit-compiled
calls of --batch_size clips (compile time reported separately). The two
images are compared, and the largest difference in each block printed
(spectral contrast differs where a band is empty: see hyper_image.py).
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
import threadpoolctl

from bench import roofline
from jplaylist.audio import hyper_image

_NUM_CLIPS = flags.DEFINE_integer("num_clips", 32, "Clips of 10 s.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Clips per jit-compiled JAX call.")
_SAMPLE_RATE = flags.DEFINE_integer("sample_rate", 16_000, "Hz (the demo corpus's rate).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions (best is reported).")


def _clips(sample_rate, num_clips, seconds=10.0):
  path = os.path.join(os.path.dirname(music21.__file__), "audioSearch", "test_audio.wav")
  samples, rate = soundfile.read(path, dtype="float32")
  audio = soxr.resample(samples, rate, sample_rate).astype(np.float32)
  window = int(seconds * sample_rate)
  hop = max(1, (len(audio) - window) // 8)
  starts = [(i * hop) % (len(audio) - window) for i in range(num_clips)]
  return np.stack([audio[s:s + window] for s in starts])


def librosa_hyper_image(clip, sample_rate, config):
  """The same [H, W] image from librosa calls, on the host (numpy)."""
  stft = librosa.stft(clip, n_fft=config.n_fft, hop_length=config.hop_length)
  magnitude = np.abs(stft)
  power = magnitude ** 2
  log_mel = librosa.power_to_db(librosa.feature.melspectrogram(
      S=power, sr=sample_rate, n_mels=config.num_mels), amin=config.amin, top_db=config.top_db)
  chroma = librosa.feature.chroma_stft(S=power, sr=sample_rate, tuning=0.0)
  onset_envelope = librosa.onset.onset_strength(
      S=log_mel, sr=sample_rate, n_fft=config.n_fft, hop_length=config.hop_length)
  tempogram = librosa.feature.tempogram(onset_envelope=onset_envelope, sr=sample_rate,
                                        hop_length=config.hop_length,
                                        win_length=config.tempogram_length)
  fold = hyper_image.cyclic_fold(sample_rate, config.hop_length, config.tempogram_length,
                                 config.cyclic_bins, config.cyclic_min_bpm,
                                 config.cyclic_octaves)
  blocks = dict(
      chroma=chroma,
      cyclic_tempogram=fold.T @ tempogram,
      log_mel=log_mel,
      mfcc=librosa.feature.mfcc(S=log_mel, n_mfcc=config.num_mfcc),
      spectral_contrast=librosa.feature.spectral_contrast(
          S=magnitude, sr=sample_rate, fmin=config.contrast_fmin,
          n_bands=config.contrast_bands, quantile=config.contrast_quantile),
      tonnetz=librosa.feature.tonnetz(chroma=chroma))
  rows = []
  for name in config.blocks:
    block = blocks[name]
    std = block.std()
    rows.append((block - block.mean()) / std if std > 1e-5 * np.abs(block).max()
                else np.zeros_like(block))
  return np.concatenate(rows, axis=0)


def main(argv):
  del argv
  if _NUM_CLIPS.value % _BATCH_SIZE.value:
    raise app.UsageError(f"--num_clips {_NUM_CLIPS.value} is not a multiple of "
                         f"--batch_size {_BATCH_SIZE.value}")
  config = hyper_image.HyperImageConfig()
  rate = _SAMPLE_RATE.value
  clips = _clips(rate, _NUM_CLIPS.value)
  batches = [jax.device_put(b) for b in np.split(clips, len(clips) // _BATCH_SIZE.value)]
  fn = jax.jit(lambda a: hyper_image.hyper_image(a, rate, config))
  start = time.perf_counter()
  fn(batches[0]).block_until_ready()
  compile_s = time.perf_counter() - start
  print(f"compiled in {compile_s:.1f} s; timing {len(clips)} clips x 10 s, "
        f"{_REPEATS.value} repeats", flush=True)

  def run_jax():
    for out in [fn(b) for b in batches]:
      out.block_until_ready()
  jax_s = roofline.best_time(run_jax, _REPEATS.value)

  ours = np.asarray(fn(batches[0]))[:2]
  theirs = [librosa_hyper_image(clip, rate, config) for clip in clips[:len(ours)]]  # warm
  def run_librosa():
    for clip in clips:
      librosa_hyper_image(clip, rate, config)
  with threadpoolctl.threadpool_limits(limits=1):
    librosa_s = roofline.best_time(run_librosa, _REPEATS.value)

  offsets = np.cumsum([0] + list(config.block_rows().values()))
  difference = {name: max(float(np.abs(mine[a:b] - ref[a:b]).max())
                          for mine, ref in zip(ours, theirs))
                for name, a, b in zip(config.blocks, offsets[:-1], offsets[1:])}
  n = len(clips)
  print(f"hyper-image {ours.shape[1:]} per 10-s clip at {rate} Hz; device "
        f"{jax.devices()[0].device_kind}, {os.cpu_count()} CPU cores")
  print(f"jax (jit, batch {_BATCH_SIZE.value}):       {n / jax_s:8.1f} clips/s  "
        f"({n * 10 / jax_s:7.0f} s of audio/s)  compile {compile_s:.1f} s")
  cores = os.cpu_count()
  print(f"librosa (per clip, 1 thread): {n / librosa_s:8.1f} clips/s  "
        f"({n * 10 / librosa_s:7.0f} s of audio/s)")
  print(f"jax / librosa on one core: {librosa_s / jax_s:.2f}x; "
        f"jax / librosa on {cores} workers (ideal scaling): {librosa_s / jax_s / cores:.2f}x")
  print(f"largest |difference| of the normalised blocks ({len(ours)} clips): "
        + ", ".join(f"{name} {value:.1e}" for name, value in difference.items()))


if __name__ == "__main__":
  app.run(main)
