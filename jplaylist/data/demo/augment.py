"""Render-time augmentation of the demo corpus: a random recording chain.

A General MIDI rendition is perfectly clean and every instrument of a
SoundFont has one timbre, so a model can tell instruments apart by the
SoundFont's sample set and its fixed "recording chain" instead of by what
makes a flute a flute. Each demo recording therefore passes through a random
chain, drawn once per recording from its own seed:

  spectral tilt  a gain of `tilt_db_per_octave` dB per octave about 1 kHz
                 (a microphone or EQ colour), applied in the frequency domain;
  reverb         convolution with a synthetic room impulse response, a direct
                 impulse followed by exponentially decaying Gaussian noise
                 whose energy falls by 60 dB in `rt60_s` seconds, mixed in at
                 `wet` (the direct sound is kept at 1 - wet);
  noise          additive coloured noise (power spectrum 1/f**`noise_colour`;
                 0 white, 1 pink) at `snr_db` dB below the signal's power;
  gain           peak-normalised to 0.9, then `gain_db` dB (<= 0) of gain.

Detuning and velocity curves happen at render time (`render.Performance`):
they change what the synthesiser plays, not the signal after it. Every
function is pure numpy; the same `Chain` and seed give identical audio.
"""

from __future__ import annotations

import dataclasses

import numpy as np

_REFERENCE_HZ = 1000.0  # spectral tilt pivots here
_PEAK = 0.9


@dataclasses.dataclass(frozen=True)
class Chain:
  """One recording chain. Fields with None skip that stage."""

  tilt_db_per_octave: float = 0.0
  rt60_s: float | None = None
  wet: float = 0.0
  snr_db: float | None = None
  noise_colour: float = 0.0
  gain_db: float = 0.0
  seed: int = 0  # drives the impulse response's and the noise's samples

  def as_dict(self) -> dict:
    return {k: (round(v, 3) if isinstance(v, float) else v)
            for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class ChainRanges:
  """The distribution `sample_chain` draws from (uniform within each range)."""

  tilt_db_per_octave: tuple[float, float] = (-3.0, 3.0)
  reverb_probability: float = 0.7
  rt60_s: tuple[float, float] = (0.2, 1.6)
  wet: tuple[float, float] = (0.1, 0.5)
  noise_probability: float = 0.7
  snr_db: tuple[float, float] = (15.0, 40.0)
  noise_colour: tuple[float, float] = (0.0, 1.0)
  gain_db: tuple[float, float] = (-18.0, 0.0)
  detune_cents: tuple[float, float] = (-30.0, 30.0)
  velocity_gamma: tuple[float, float] = (0.7, 1.4)


def sample_chain(rng: np.random.Generator, ranges: ChainRanges = ChainRanges()) -> Chain:
  """Draws a recording chain."""
  reverb = rng.random() < ranges.reverb_probability
  noise = rng.random() < ranges.noise_probability
  return Chain(
      tilt_db_per_octave=float(rng.uniform(*ranges.tilt_db_per_octave)),
      rt60_s=float(rng.uniform(*ranges.rt60_s)) if reverb else None,
      wet=float(rng.uniform(*ranges.wet)) if reverb else 0.0,
      snr_db=float(rng.uniform(*ranges.snr_db)) if noise else None,
      noise_colour=float(rng.uniform(*ranges.noise_colour)),
      gain_db=float(rng.uniform(*ranges.gain_db)),
      seed=int(rng.integers(2**31)))


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
  """Scales audio by `gain_db` decibels (amplitude 10**(gain_db / 20))."""
  return audio * np.float32(10.0 ** (gain_db / 20.0))


def spectral_tilt(audio: np.ndarray, sample_rate: int,
                  db_per_octave: float) -> np.ndarray:
  """Tilts the spectrum: gain(f) = db_per_octave * log2(f / 1 kHz) dB.

  The gain is held at its value at 20 Hz below 20 Hz, so DC and rumble are not
  boosted without bound by a negative slope.

  Args:
    audio: [num_samples] float.
    sample_rate: Hz.
    db_per_octave: slope; positive brightens.
  """
  if db_per_octave == 0.0:
    return audio.astype(np.float32)
  spectrum = np.fft.rfft(audio.astype(np.float64))
  freqs = np.fft.rfftfreq(len(audio), 1.0 / sample_rate)
  gain_db = db_per_octave * np.log2(np.maximum(freqs, 20.0) / _REFERENCE_HZ)
  return np.fft.irfft(spectrum * 10.0 ** (gain_db / 20.0), n=len(audio)).astype(np.float32)


def room_impulse_response(rng: np.random.Generator, sample_rate: int,
                          rt60_s: float) -> np.ndarray:
  """A synthetic room: unit direct impulse, then decaying noise for 1.2 * rt60.

  The tail's amplitude is exp(-t * 3 ln(10) / rt60), so its energy falls by
  60 dB in rt60 seconds; it starts 2.5 ms after the direct sound and is scaled
  to hold as much energy as the direct impulse.

  Returns:
    [num_taps] float64 impulse response.
  """
  if not rt60_s > 0:
    raise ValueError(f"rt60_s must be positive, got {rt60_s}")
  num_taps = int(1.2 * rt60_s * sample_rate)
  delay = int(0.0025 * sample_rate)
  t = np.arange(num_taps - delay) / sample_rate
  tail = rng.standard_normal(len(t)) * np.exp(-t * 3.0 * np.log(10.0) / rt60_s)
  tail /= np.sqrt(np.sum(tail ** 2))
  rir = np.zeros(num_taps)
  rir[0] = 1.0
  rir[delay:] += tail
  return rir


def reverb(audio: np.ndarray, rir: np.ndarray, wet: float) -> np.ndarray:
  """Mixes the dry signal with its convolution by `rir` (same length as audio).

  Args:
    audio: [num_samples] float.
    rir: [num_taps] impulse response.
    wet: share of the reverberant signal, in [0, 1].
  """
  if not 0.0 <= wet <= 1.0:
    raise ValueError(f"wet must be in [0, 1], got {wet}")
  size = len(audio) + len(rir) - 1
  n_fft = 1 << (size - 1).bit_length()
  convolved = np.fft.irfft(np.fft.rfft(audio.astype(np.float64), n_fft)
                           * np.fft.rfft(rir, n_fft), n_fft)[:len(audio)]
  return ((1.0 - wet) * audio + wet * convolved).astype(np.float32)


def coloured_noise(rng: np.random.Generator, num_samples: int,
                   colour: float) -> np.ndarray:
  """Gaussian noise with power spectrum proportional to 1/f**colour, unit power."""
  spectrum = np.fft.rfft(rng.standard_normal(num_samples))
  freqs = np.fft.rfftfreq(num_samples)
  spectrum *= np.maximum(freqs, freqs[1] if num_samples > 2 else 1.0) ** (-colour / 2)
  noise = np.fft.irfft(spectrum, n=num_samples)
  return noise / np.sqrt(np.mean(noise ** 2))


def add_noise(audio: np.ndarray, rng: np.random.Generator, snr_db: float,
              colour: float = 0.0) -> np.ndarray:
  """Adds noise whose power is `snr_db` dB below the signal's mean power."""
  signal_power = float(np.mean(audio.astype(np.float64) ** 2))
  if signal_power == 0.0:
    return audio.astype(np.float32)
  noise = coloured_noise(rng, len(audio), colour)
  noise *= np.sqrt(signal_power / 10.0 ** (snr_db / 10.0))
  return (audio + noise).astype(np.float32)


def peak_normalise(audio: np.ndarray, peak: float = _PEAK) -> np.ndarray:
  top = float(np.max(np.abs(audio))) if len(audio) else 0.0
  return (audio * (peak / top) if top > 0 else audio).astype(np.float32)


def apply_chain(audio: np.ndarray, sample_rate: int, chain: Chain) -> np.ndarray:
  """Runs a recording through `chain` (tilt, reverb, noise, peak 0.9, gain).

  Args:
    audio: [num_samples] float32 dry rendition.
    sample_rate: Hz.
    chain: what to apply; its seed makes the result reproducible.

  Returns:
    [num_samples] float32, peak 0.9 * 10**(gain_db / 20).
  """
  rng = np.random.default_rng(chain.seed)
  out = spectral_tilt(audio, sample_rate, chain.tilt_db_per_octave)
  if chain.rt60_s is not None:
    out = reverb(out, room_impulse_response(rng, sample_rate, chain.rt60_s), chain.wet)
  if chain.snr_db is not None:
    out = add_noise(out, rng, chain.snr_db, chain.noise_colour)
  if chain.gain_db > 0:
    raise ValueError(f"gain_db must be <= 0 (the peak is 0.9), got {chain.gain_db}")
  return apply_gain(peak_normalise(out), chain.gain_db)


def velocity_curve(velocities: np.ndarray, gamma: float) -> np.ndarray:
  """Maps MIDI velocities through v' = 1 + 126 * ((v - 1) / 126) ** gamma.

  gamma > 1 plays softer (a lighter touch), gamma < 1 louder; 1 and 127 stay.
  """
  if not gamma > 0:
    raise ValueError(f"velocity gamma must be positive, got {gamma}")
  scaled = (np.clip(velocities, 1, 127) - 1.0) / 126.0
  return 1.0 + 126.0 * scaled ** gamma
