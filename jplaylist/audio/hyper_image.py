"""Hyper-image features of a clip: six librosa features on one time axis, on device.

The hyper-image CNN stacks a clip's chromagram, cyclic tempogram,
mel-spectrogram, MFCC, spectral contrast and tonnetz, each normalised, into
one image that a small CNN reads. This module computes those features in
JAX (batched over clips and jit-able) so that they run beside the log-mel
frontend on the accelerator instead of in the input workers, and each
equals librosa 0.11.0's function of the same name (tests/audio/
test_hyper_image.py states the tolerances):

  block               rows  librosa equivalent
  chroma                12  feature.chroma_stft(S=|STFT|^2, tuning=0.0)
  cyclic_tempogram      15  feature.tempogram(onset_envelope=onset_strength)
                            folded onto tempo octaves (`cyclic_fold`)
  log_mel              128  power_to_db(feature.melspectrogram(S=|STFT|^2))
  mfcc                  20  feature.mfcc(S=that log-mel)
  spectral_contrast      7  feature.spectral_contrast(S=|STFT|)
  tonnetz                6  feature.tonnetz(chroma=that chroma)

Choices where librosa's defaults are not reasonable on device:
  * chroma is taken at a fixed tuning (A4 = 440 Hz, `tuning=0.0`); librosa's
    default estimates the tuning per clip with `piptrack`, a data-dependent
    peak picking that does not batch.
  * tonnetz is projected from that STFT chroma; librosa's default is
    `chroma_cqt`, and a constant-Q transform (recursive downsampling, one
    filter length per octave) is not worth porting when the STFT chroma
    carries the same pitch classes.
  * the cyclic tempogram has no librosa function. Following Grosche, Müller
    & Kurth's cyclic tempogram (ICASSP 2010), C(t, s) = sum_k T(t, s 2^k)
    (here the mean over k): the autocorrelation tempogram T (rows are lags;
    lag l is 60 sr / (hop l) BPM) is read, by linear interpolation in lag,
    at the tempi `cyclic_min_bpm * 2^(o + c / cyclic_bins)` for each octave
    o < `cyclic_octaves` and tempo class c < `cyclic_bins`. Class c
    therefore reads the tempi whose log2(BPM / cyclic_min_bpm) mod 1 is
    c / cyclic_bins, whatever the octave: 60, 120 and 240 BPM share a class.
    The default range, 40-320 BPM (lags of 47 down to 6 frames at 16 kHz),
    covers musical tempi while staying above the lag grid's resolution.

Time axis: every block is computed from one centred STFT (Hann, `n_fft`,
`hop_length`; librosa's `center=True`, zero padding), so every block has
1 + num_samples // hop_length frames at sample_rate / hop_length frames per
second (313 frames, 31.25 per second, for 10 s at 16 kHz) and no block is
resampled. The onset envelope under the tempogram is librosa's: spectral flux
of the same log-mel, shifted by the centring; each tempogram column is the
autocorrelation of the `tempogram_length` frames around it.

Spectral contrast is ill-conditioned where a band holds no signal (above a
resampler's cut-off, say): its valley, the quietest 2% of bins, is then
float32 rounding noise, on which two FFT implementations disagree by dB.
Neither value means anything there; with any noise floor (a recording at its
native rate, or dither 80 dB down) the two agree to 1e-2 dB.

Where to compute them: `bench/hyper_image.py` times this module (jit,
batched) against the same image from librosa per clip, as an input worker
would make it.

Layout and normalisation (`hyper_image`): the blocks are stacked along rows
in `HyperImageConfig.blocks` order, giving [B, H, W] with H the sum of the
rows above (188 by default) and W the frames, row 0 at the top being the
first chroma class (C). Each block is then normalised per clip over all its
rows and frames together ("standardise": zero mean and unit variance;
"minmax": onto [0, 1]), so blocks of different units (dB, correlations,
unit-max chroma) share one scale while the differences between rows of a
block (the spectral envelope across mel bands, say) survive; a constant block
(the log-mel or chroma of silence) becomes 0.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jplaylist.audio import frontend

BLOCKS = ("chroma", "cyclic_tempogram", "log_mel", "mfcc", "spectral_contrast", "tonnetz")
NUM_CHROMA = 12
_TINY = float(np.finfo(np.float32).tiny)  # librosa.util.normalize's threshold


@dataclasses.dataclass(frozen=True)
class HyperImageConfig:
  """Settings of the hyper-image features (librosa's defaults unless stated).

  Attributes:
    n_fft: STFT window (periodic Hann) and FFT size, samples.
    hop_length: samples between frames, shared by every block.
    num_mels: mel bands (Slaney scale and area normalisation, 0 Hz to Nyquist).
    num_mfcc: cepstral coefficients kept (DCT-II, orthonormal).
    top_db: dB below a clip's peak at which log-mel and contrast are floored.
    amin: power floor before the log.
    contrast_fmin: lower edge of the first octave band of spectral contrast, Hz.
    contrast_bands: octave bands above the first (n_bands; rows = bands + 1).
    contrast_quantile: fraction of a band's bins averaged for peak and valley.
    tempogram_length: autocorrelation window of the tempogram, frames (lags).
    cyclic_bins: tempo classes per octave of the cyclic tempogram.
    cyclic_min_bpm: the tempo that class 0 reads in the lowest octave.
    cyclic_octaves: octaves folded, from cyclic_min_bpm upward.
    blocks: feature blocks stacked top to bottom (names in BLOCKS).
    normalisation: "standardise", "minmax" or "none", per clip and block.
  """
  n_fft: int = 2048
  hop_length: int = 512
  num_mels: int = 128
  num_mfcc: int = 20
  top_db: float = 80.0
  amin: float = 1e-10
  contrast_fmin: float = 200.0
  contrast_bands: int = 6
  contrast_quantile: float = 0.02
  tempogram_length: int = 384
  cyclic_bins: int = 15
  cyclic_min_bpm: float = 40.0
  cyclic_octaves: int = 3
  blocks: tuple[str, ...] = BLOCKS
  normalisation: str = "standardise"

  def block_rows(self) -> dict[str, int]:
    """Rows of each block, in `blocks` order."""
    rows = dict(chroma=NUM_CHROMA, cyclic_tempogram=self.cyclic_bins, log_mel=self.num_mels,
                mfcc=self.num_mfcc, spectral_contrast=self.contrast_bands + 1, tonnetz=6)
    return {name: rows[name] for name in self.blocks}

  def num_frames(self, num_samples: int) -> int:
    """Frames (image width W) of a clip of `num_samples`."""
    return 1 + num_samples // self.hop_length


def _frontend_config(sample_rate: int, config: HyperImageConfig) -> frontend.FrontendConfig:
  return frontend.FrontendConfig(sample_rate=sample_rate, window_length=config.n_fft,
                                 hop_length=config.hop_length, n_fft=config.n_fft,
                                 num_mels=config.num_mels, center=True, num_frames=None,
                                 amin=config.amin)


# ---------------------------------------------------------------- constants (host)

@functools.lru_cache(maxsize=8)
def chroma_filterbank(sample_rate: int, n_fft: int, tuning: float = 0.0) -> np.ndarray:
  """[n_fft // 2 + 1, 12] float32: librosa.filters.chroma's weights, transposed.

  Each FFT bin spreads over the pitch classes with Gaussian weights in chroma
  units (standard deviation half the bin's width, at least half a class),
  each bin's column L2-normalised, then weighted by a Gaussian in octaves
  centred on 880 Hz (octave 5 above A0), 2 octaves wide.
  Class 0 is C.
  """
  frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
  a440 = 440.0 * 2.0 ** (tuning / NUM_CHROMA)
  bins = NUM_CHROMA * np.log2(frequencies / (a440 / 16))
  bins = np.concatenate(([bins[0] - 1.5 * NUM_CHROMA], bins))  # made-up 0-Hz bin
  bin_width = np.concatenate((np.maximum(np.diff(bins), 1.0), [1.0]))
  distance = bins[None, :] - np.arange(NUM_CHROMA, dtype=np.float64)[:, None]
  half = np.round(NUM_CHROMA / 2)
  distance = np.remainder(distance + half + 10 * NUM_CHROMA, NUM_CHROMA) - half
  weights = np.exp(-0.5 * (2 * distance / bin_width[None, :]) ** 2)
  norms = np.sqrt((weights ** 2).sum(0, keepdims=True))
  weights = weights / np.where(norms < np.finfo(np.float64).tiny, 1.0, norms)
  weights *= np.exp(-0.5 * ((bins / NUM_CHROMA - 5.0) / 2.0) ** 2)[None, :]
  weights = np.roll(weights, -3, axis=0)  # classes from C, not A
  return np.ascontiguousarray(weights[:, :1 + n_fft // 2].T, dtype=np.float32)


@functools.lru_cache(maxsize=8)
def dct_matrix(num_mels: int, num_mfcc: int) -> np.ndarray:
  """[num_mels, num_mfcc] float32: orthonormal DCT-II (scipy's type=2, norm="ortho")."""
  n = np.arange(num_mels)
  basis = np.cos(np.pi * np.arange(num_mfcc)[:, None] * (2 * n[None, :] + 1) / (2 * num_mels))
  basis *= np.sqrt(2.0 / num_mels)
  basis[0] /= np.sqrt(2.0)
  return basis.T.astype(np.float32)


@functools.lru_cache(maxsize=8)
def tonnetz_matrix() -> np.ndarray:
  """[12, 6] float32: chroma to the tonal centroids of fifths, minor and major thirds."""
  dim_map = np.linspace(0, 12, num=NUM_CHROMA, endpoint=False)
  scale = np.array([7.0 / 6, 7.0 / 6, 3.0 / 2, 3.0 / 2, 2.0 / 3, 2.0 / 3])
  angle = np.multiply.outer(scale, dim_map)
  angle[::2] -= 0.5  # even rows are sines
  radius = np.array([1, 1, 1, 1, 0.5, 0.5])
  return (radius[:, None] * np.cos(np.pi * angle)).T.astype(np.float32)


@functools.lru_cache(maxsize=8)
def contrast_bands(sample_rate: int, n_fft: int, fmin: float, num_bands: int,
                   quantile: float) -> tuple[tuple[int, int, int], ...]:
  """(first bin, stop bin, bins averaged) of each spectral-contrast band.

  librosa's bands: octaves [fmin 2^(k-1), fmin 2^k] (the first from 0 Hz),
  each but the first widened by the bin below, the last reaching Nyquist,
  every band but the last without its top bin; peak and valley each average
  round(quantile * band bins) (at least 1) bins.
  """
  edges = np.zeros(num_bands + 2)
  edges[1:] = fmin * 2.0 ** np.arange(num_bands + 1)
  if np.any(edges[:-1] >= 0.5 * sample_rate):
    raise ValueError(f"spectral contrast band edges {edges[:-1]} Hz reach Nyquist at "
                     f"{sample_rate} Hz: lower contrast_fmin or contrast_bands")
  freq = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
  bands = []
  for k, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
    inside = np.flatnonzero((freq >= low) & (freq <= high))
    first = inside[0] - 1 if k > 0 else inside[0]
    last = len(freq) - 1 if k == num_bands else inside[-1]
    count = max(int(np.rint(quantile * (last - first + 1))), 1)
    bands.append((int(first), int(last if k < num_bands else last + 1), count))
  return tuple(bands)


@functools.lru_cache(maxsize=8)
def cyclic_fold(sample_rate: int, hop_length: int, num_lags: int, bins: int,
                min_bpm: float, octaves: int) -> np.ndarray:
  """[num_lags, bins] float32: tempogram lags to cyclic tempo classes.

  Column c reads the tempogram at min_bpm 2^(o + c / bins) BPM for o <
  octaves, each by linear interpolation between the two nearest integer
  lags, and averages the octaves.
  """
  bpm = min_bpm * 2.0 ** (np.arange(octaves)[:, None] + np.arange(bins)[None, :] / bins)
  lag = 60.0 * sample_rate / (hop_length * bpm)  # [octaves, bins], fractional frames
  if lag.min() < 1 or lag.max() >= num_lags - 1:
    raise ValueError(f"cyclic tempogram lags {lag.min():.1f}..{lag.max():.1f} fall outside "
                     f"the tempogram's 1..{num_lags - 1}: change cyclic_min_bpm, "
                     "cyclic_octaves or tempogram_length")
  below = np.floor(lag).astype(int)
  frac = lag - below
  fold = np.zeros((num_lags, bins))
  for o in range(octaves):
    for c in range(bins):
      fold[below[o, c], c] += (1.0 - frac[o, c]) / octaves
      fold[below[o, c] + 1, c] += frac[o, c] / octaves
  return fold.astype(np.float32)


def _hann(length: int) -> np.ndarray:
  """Periodic Hann (scipy's get_window("hann", length, fftbins=True))."""
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)).astype(np.float32)


# ---------------------------------------------------------------- features (device)

def _matmul(x, matrix):
  return jnp.einsum("btf,fc->btc", x, matrix, precision=jax.lax.Precision.HIGHEST)


def power_to_db(power: jax.Array, amin: float, top_db: float | None) -> jax.Array:
  """librosa.power_to_db (ref 1): 10 log10, floored top_db below each clip's peak.

  Args:
    power: [B, ...] non-negative.
  """
  db = 10.0 * jnp.log10(jnp.maximum(power, amin))
  if top_db is None:
    return db
  peak = jnp.max(db, axis=tuple(range(1, db.ndim)), keepdims=True)
  return jnp.maximum(db, peak - top_db)


def _normalize(x: jax.Array, length: jax.Array) -> jax.Array:
  """x / length, leaving frames whose length is below float32's tiny as they are."""
  return x / jnp.where(length < _TINY, 1.0, length)


def chroma_stft(power: jax.Array, sample_rate: int, config: HyperImageConfig) -> jax.Array:
  """Chroma of a power spectrogram, each frame divided by its maximum.

  Args:
    power: [B, frames, n_fft // 2 + 1] |STFT|^2.

  Returns:
    [B, frames, 12] float32 in [0, 1] (an all-zero frame stays 0).
  """
  raw = _matmul(power, chroma_filterbank(sample_rate, config.n_fft))
  return _normalize(raw, jnp.max(jnp.abs(raw), axis=-1, keepdims=True))


def tonnetz(chroma: jax.Array) -> jax.Array:
  """[B, frames, 12] chroma -> [B, frames, 6] tonal centroids (chroma L1-normalised)."""
  unit = _normalize(chroma, jnp.sum(jnp.abs(chroma), axis=-1, keepdims=True))
  return _matmul(unit, tonnetz_matrix())


def mfcc(log_mel: jax.Array, config: HyperImageConfig) -> jax.Array:
  """[B, frames, num_mels] dB -> [B, frames, num_mfcc] orthonormal DCT-II."""
  return _matmul(log_mel, dct_matrix(config.num_mels, config.num_mfcc))


def spectral_contrast(magnitude: jax.Array, sample_rate: int, config: HyperImageConfig
                      ) -> jax.Array:
  """Peak minus valley, in dB, of octave bands of a magnitude spectrogram.

  Peak and valley average the largest and smallest `contrast_quantile` of a
  band's bins (lax.top_k, not a full sort); each is taken to dB (of the
  magnitude, as librosa does) with its own top_db floor over the clip.

  Args:
    magnitude: [B, frames, n_fft // 2 + 1] |STFT|.

  Returns:
    [B, frames, contrast_bands + 1] float32.
  """
  bands = contrast_bands(sample_rate, config.n_fft, config.contrast_fmin,
                         config.contrast_bands, config.contrast_quantile)
  peak, valley = [], []
  for first, stop, count in bands:
    band = magnitude[..., first:stop]
    peak.append(jax.lax.top_k(band, count)[0].mean(-1))
    valley.append(-jax.lax.top_k(-band, count)[0].mean(-1))
  peak, valley = jnp.stack(peak, -1), jnp.stack(valley, -1)
  return (power_to_db(peak, config.amin, config.top_db)
          - power_to_db(valley, config.amin, config.top_db))


def onset_strength(log_mel: jax.Array, config: HyperImageConfig) -> jax.Array:
  """librosa.onset.onset_strength of a log-mel: mean positive flux, centred.

  Frame t holds the flux from frame t - 1 - d to t - d, d = n_fft // (2 hop)
  (the centring shift); the first 1 + d frames are 0.

  Args:
    log_mel: [B, frames, mels] dB.

  Returns:
    [B, frames] float32.
  """
  flux = jnp.maximum(log_mel[:, 1:] - log_mel[:, :-1], 0.0).mean(-1)
  shift = 1 + config.n_fft // (2 * config.hop_length)
  return jnp.pad(flux, ((0, 0), (shift, 0)))[:, :log_mel.shape[1]]


def tempogram(onset_envelope: jax.Array, config: HyperImageConfig) -> jax.Array:
  """librosa.feature.tempogram: windowed autocorrelation around each frame.

  The envelope is padded by half a window each side with linear ramps from
  0 (numpy's "linear_ramp"), each frame's `tempogram_length` window is
  Hann-weighted and autocorrelated by FFT, and each frame is divided by its
  largest absolute value (lag 0).

  Args:
    onset_envelope: [B, frames].

  Returns:
    [B, frames, tempogram_length] float32, lag along the last axis.
  """
  length = config.tempogram_length
  half = length // 2
  ramp = jnp.arange(half, dtype=jnp.float32) / half
  padded = jnp.concatenate([ramp * onset_envelope[:, :1], onset_envelope,
                            ramp[::-1] * onset_envelope[:, -1:]], axis=1)
  num_frames = onset_envelope.shape[1]
  index = np.arange(num_frames)[:, None] + np.arange(length)[None, :]
  windows = padded[:, index] * _hann(length)
  spectrum = jnp.fft.rfft(windows, n=2 * length, axis=-1)
  power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
  acf = jnp.fft.irfft(power, n=2 * length, axis=-1)[..., :length]
  return _normalize(acf, jnp.max(jnp.abs(acf), axis=-1, keepdims=True))


def cyclic_tempogram(tempogram_: jax.Array, sample_rate: int, config: HyperImageConfig
                     ) -> jax.Array:
  """[B, frames, lags] tempogram -> [B, frames, cyclic_bins] (`cyclic_fold`)."""
  fold = cyclic_fold(sample_rate, config.hop_length, tempogram_.shape[-1], config.cyclic_bins,
                     config.cyclic_min_bpm, config.cyclic_octaves)
  return _matmul(tempogram_, fold)


def features(waveform: jax.Array, sample_rate: int,
             config: HyperImageConfig = HyperImageConfig()) -> dict[str, jax.Array]:
  """Every block of `config.blocks`, unnormalised, from one STFT.

  Args:
    waveform: [B, samples] float waveforms at `sample_rate`.
    sample_rate: Hz (static under jit).
    config: feature settings.

  Returns:
    {block name: [B, frames, rows] float32}, frames = 1 + samples // hop_length.
  """
  waveform = jnp.asarray(waveform, jnp.float32)
  fe_config = _frontend_config(sample_rate, config)
  power = frontend.power_spectrogram(waveform, fe_config)
  wanted = set(config.blocks)
  out = {}
  if wanted & {"log_mel", "mfcc", "cyclic_tempogram"}:
    mel = _matmul(power, frontend.mel_filterbank(fe_config))
    log_mel = power_to_db(mel, config.amin, config.top_db)
    out["log_mel"] = log_mel
    out["mfcc"] = mfcc(log_mel, config)
    out["cyclic_tempogram"] = cyclic_tempogram(
        tempogram(onset_strength(log_mel, config), config), sample_rate, config)
  if wanted & {"chroma", "tonnetz"}:
    out["chroma"] = chroma_stft(power, sample_rate, config)
    out["tonnetz"] = tonnetz(out["chroma"])
  if "spectral_contrast" in wanted:
    out["spectral_contrast"] = spectral_contrast(jnp.sqrt(power), sample_rate, config)
  return {name: out[name] for name in config.blocks}


def normalise_block(block: jax.Array, method: str) -> jax.Array:
  """Per-clip normalisation of a [B, rows, frames] block over rows and frames."""
  axes = (1, 2)
  if method == "none":
    return block
  if method == "standardise":
    centred = block - block.mean(axes, keepdims=True)
    std = jnp.sqrt(jnp.mean(centred ** 2, axes, keepdims=True))
    # Relative to the block's scale: the float32 mean of a constant block
    # (silence at -100 dB) is off by rounding, which must not be blown up.
    constant = std <= 1e-5 * jnp.max(jnp.abs(block), axes, keepdims=True) + 1e-12
    return jnp.where(constant, 0.0, centred / jnp.where(constant, 1.0, std))
  if method == "minmax":
    low, high = block.min(axes, keepdims=True), block.max(axes, keepdims=True)
    span = high - low
    return jnp.where(span > 0, (block - low) / jnp.where(span > 0, span, 1.0), 0.0)
  raise ValueError(f"unknown normalisation {method!r}: 'standardise', 'minmax' or 'none'")


def hyper_image(waveform: jax.Array, sample_rate: int,
                config: HyperImageConfig = HyperImageConfig()) -> jax.Array:
  """The hyper-image of clips: normalised feature blocks stacked along rows.

  Args:
    waveform: [B, samples] (or [samples]) float waveforms at `sample_rate`.
    sample_rate: Hz (static under jit).
    config: feature settings, block order and normalisation.

  Returns:
    [B, H, W] float32 (or [H, W]): H = sum(config.block_rows().values())
    rows, blocks top to bottom in `config.blocks` order, each block's rows in
    its feature's order (chroma from C, tempo classes upward, mel bands and
    cepstra from the lowest, contrast bands upward, tonnetz fifths-minor-major
    x/y); W = 1 + samples // hop_length frames, one per hop.
  """
  single = jnp.ndim(waveform) == 1
  waveform = jnp.atleast_2d(waveform)
  blocks = features(waveform, sample_rate, config)
  image = jnp.concatenate(
      [normalise_block(jnp.swapaxes(blocks[name], 1, 2), config.normalisation)
       for name in config.blocks], axis=1)
  return image[0] if single else image
