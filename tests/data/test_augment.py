"""The demo corpus's recording chain against numpy statistics."""

import numpy as np

from jplaylist.data.demo import augment

SR = 16_000


def _signal(seed=0, seconds=4.0):
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * SR)) / SR
  return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))
          ).astype(np.float32)


def test_noise_is_added_at_the_requested_snr():
  audio = _signal()
  for snr, colour in ((10.0, 0.0), (25.0, 1.0), (37.5, 0.5)):
    noisy = augment.add_noise(audio, np.random.default_rng(1), snr, colour)
    noise = noisy.astype(np.float64) - audio
    measured = 10 * np.log10(np.mean(audio.astype(np.float64) ** 2) / np.mean(noise ** 2))
    assert abs(measured - snr) < 0.5


def test_gain_in_decibels():
  audio = _signal()
  out = augment.apply_gain(audio, -7.5)
  measured = 20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2))
                           / np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
  assert abs(measured - (-7.5)) < 0.01


def test_tilt_slope_from_a_spectrum_fit():
  audio = np.random.default_rng(2).standard_normal(SR * 4).astype(np.float32)
  out = augment.spectral_tilt(audio, SR, 2.5)
  freqs = np.fft.rfftfreq(len(audio), 1 / SR)
  ratio_db = 20 * np.log10(np.abs(np.fft.rfft(out)) / np.abs(np.fft.rfft(audio)))
  band = (freqs > 100) & (freqs < 7000)
  slope = np.polyfit(np.log2(freqs[band]), ratio_db[band], 1)[0]
  assert abs(slope - 2.5) < 0.05


def test_rir_decay_time_from_the_energy_curve():
  for rt60 in (0.3, 1.2):
    rir = augment.room_impulse_response(np.random.default_rng(3), SR, rt60)
    energy = np.cumsum(rir[::-1] ** 2)[::-1]  # Schroeder backward integral
    edc = 10 * np.log10(energy / energy[0])
    t = np.arange(len(rir)) / SR
    band = (edc < -10) & (edc > -30)
    slope = np.polyfit(t[band], edc[band], 1)[0]  # dB per second
    assert abs(-60 / slope - rt60) / rt60 < 0.15


def test_chain_is_reproducible_and_sets_the_peak():
  audio = _signal()
  chain = augment.sample_chain(np.random.default_rng(5))
  chain = augment.Chain(**{**chain.__dict__, "rt60_s": 0.5, "wet": 0.3, "snr_db": 20.0})
  a = augment.apply_chain(audio, SR, chain)
  b = augment.apply_chain(audio, SR, chain)
  np.testing.assert_array_equal(a, b)
  assert abs(20 * np.log10(np.max(np.abs(a)) / 0.9) - chain.gain_db) < 0.01
  other = augment.apply_chain(audio, SR, augment.Chain(**{**chain.__dict__, "seed": 9}))
  assert not np.array_equal(a, other)


def test_velocity_curve_matches_its_formula():
  v = np.array([1.0, 30.0, 64.0, 100.0, 127.0])
  np.testing.assert_allclose(augment.velocity_curve(v, 1.3),
                             1 + 126 * ((v - 1) / 126) ** 1.3)
  assert np.all(augment.velocity_curve(v[1:4], 1.3) < v[1:4])


def test_detuning_moves_the_pitch_by_the_asked_cents():
  from jplaylist.data.demo import catalogue, render  # pylint: disable=g-import-not-at-top
  score = catalogue.Score(
      work=catalogue.Work("bach_chorales", "x"), title=None, composer=None,
      genre="g", parts=[np.array([[0.0, 8.0, 69.0]])], metre="4/4",
      metre_class="simple quadruple", beat_quarters=1.0, bar_quarters=4.0,
      tonic="A", mode="major", length_quarters=8.0)

  def peak_hz(cents, soundfont):
    audio, _ = render.render(score, render.Performance(
        "solo flute", 60.0, 0, 10.0, 1, soundfont=soundfont, detune_cents=cents))
    seg = audio[8000:8000 + 65536] * np.hanning(65536)
    spectrum = np.abs(np.fft.rfft(seg, 1 << 20))
    return np.fft.rfftfreq(1 << 20, 1 / SR)[np.argmax(spectrum)]

  for soundfont in ("TimGM6mb", "Merlin"):
    base = peak_hz(0.0, soundfont)
    assert abs(1200 * np.log2(peak_hz(40.0, soundfont) / base) - 40.0) < 3.0
