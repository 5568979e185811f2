"""Augmentation kinds: RawBoost's three algorithms, codec round trips, channel filters, classic transforms,
kind selection and reproducibility."""
import numpy as np
import pytest

from spec2img import augment
from spec2img.augment import (GROUPS, KINDS, AugmentParams, AugmentStep, CodecUnavailable, UnknownKindError,
                              augment_wave, check_available, expand_kinds, variant_params)
from spec2img.augment import channel, classic, codecs, rawboost

SR = 16000


def tone(freq, seconds=1.0, sr=SR, amplitude=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speechlike(seconds=2.0, seed=0):
    """Noise bursts shaped like syllables: broadband, with pauses (codecs and filters have something to do)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    envelope = (np.sin(2 * np.pi * 3 * np.arange(n) / SR) > 0).astype(np.float32)
    return (0.2 * rng.standard_normal(n) * envelope + tone(220, seconds, amplitude=0.2) * envelope).astype(np.float32)


def band_power(wave, low, high, sr=SR):
    spectrum = np.abs(np.fft.rfft(wave.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(wave.size, 1 / sr)
    return spectrum[(freqs >= low) & (freqs < high)].sum()


def test_kind_list_groups_chains_and_unknown_names():
    assert expand_kinds("rawboost") == GROUPS["rawboost"] == ("rawboost-lnl", "rawboost-isd", "rawboost-ssi")
    assert expand_kinds("mp3, codec") == ("mp3", "opus", "mulaw", "alaw")
    assert expand_kinds("rawboost-lnl+rawboost-isd,noise") == ("rawboost-lnl+rawboost-isd", "noise")
    assert set(expand_kinds("all")) == set(KINDS)
    with pytest.raises(UnknownKindError, match="'gsm'"):
        expand_kinds("mp3,gsm")
    with pytest.raises(UnknownKindError, match="'rawboost' in the chain"):
        expand_kinds("rawboost+mp3")             # a group is not a kind inside a chain
    with pytest.raises(UnknownKindError, match="no augmentation kind"):
        expand_kinds(" , ")


def test_variants_are_reproducible_and_cover_every_kind():
    entries = expand_kinds("all")
    params = [variant_params(7, "clip", k, entries) for k in range(1, 200)]
    assert params == [variant_params(7, "clip", k, entries) for k in range(1, 200)]
    assert variant_params(8, "clip", 1, entries) != params[0] or variant_params(8, "clip", 2, entries) != params[1]
    assert {p.steps[0].kind for p in params} == set(KINDS)
    for p in params:
        values = dict(p.steps[0].values)
        kind = p.steps[0].kind
        if kind == "mp3":
            assert values["kbps"] in codecs.MP3_KBPS
        if kind == "rawboost-ssi":
            assert 10 <= values["snr_db"] <= 40
        if kind == "rawboost-isd":
            assert 0 <= values["percent"] <= 10
        if kind == "lowpass":
            assert 2000 <= values["cutoff_hz"] <= 0.9 * SR / 2
        if kind == "noise":
            assert 5 <= values["snr_db"] <= 30
    described = {p.describe() for p in params}
    assert any(d.startswith("mp3 kbps=") for d in described)
    assert any(d.startswith("rawboost-ssi snr_db=") and " seed=" in d for d in described)
    wave = speechlike()
    for kind in KINDS:                           # same parameters, same samples
        p = variant_params(3, "x", 1, (kind,))
        out = augment_wave(wave, SR, p)
        np.testing.assert_array_equal(out, augment_wave(wave, SR, p))
        assert out.dtype == np.float32 and np.all(np.isfinite(out))
        if kind != "stretch":
            assert out.size == wave.size, kind


def test_a_chain_applies_its_kinds_in_order():
    wave = speechlike()
    p = variant_params(0, "c", 1, ("telephone+mulaw",))
    assert [s.kind for s in p.steps] == ["telephone", "mulaw"] and " + " in p.describe()
    by_hand = codecs.g711_round_trip(channel.telephone_band(wave, SR, **dict(p.steps[0].values)), SR, "ULAW")
    np.testing.assert_allclose(augment_wave(wave, SR, p), by_hand, atol=1e-6)


def test_rawboost_lnl_is_a_reproducible_nonlinear_filter():
    wave = speechlike()
    a = rawboost.lnl_convolutive_noise(wave, SR, np.random.default_rng(1))
    b = rawboost.lnl_convolutive_noise(wave, SR, np.random.default_rng(1))
    c = rawboost.lnl_convolutive_noise(wave, SR, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert a.size == wave.size and not np.allclose(a, c)
    assert abs(float(a.mean())) < 1e-3 and np.max(np.abs(a)) <= 1.0 + 1e-6
    # still the same signal, filtered (one sample early: the reference's filterFIR alignment; a cascade of
    # notches can invert the phase where the signal lies), not noise
    assert abs(np.corrcoef(a[:-1], wave[1:])[0, 1]) > 0.5


def test_rawboost_fir_filter_is_aligned_and_notches_its_band():
    wave = speechlike()
    # an odd-length linear-phase filter comes out one sample early, as in the reference's filterFIR
    np.testing.assert_allclose(rawboost.filter_fir(wave, np.array([0.0, 1.0, 0.0]))[:-1], wave[1:])
    bank = rawboost.NotchBank(n_bands=1, min_f=2000, max_f=2000, min_bw=800, max_bw=800, min_coeff=99, max_coeff=99)
    b = rawboost.notch_coefficients(bank, SR, np.random.default_rng(0))
    noise = np.random.default_rng(1).standard_normal(4 * SR)
    filtered = rawboost.filter_fir(noise, b)
    assert band_power(filtered, 1800, 2200) < 0.05 * band_power(noise, 1800, 2200)   # the notch
    assert band_power(filtered, 4000, 6000) > 0.5 * band_power(noise, 4000, 6000)    # elsewhere kept


def test_rawboost_isd_touches_the_requested_share_of_samples():
    wave = np.clip(0.1 * np.random.default_rng(0).standard_normal(SR), -0.3, 0.3).astype(np.float32)  # |out| < 1
    out = rawboost.isd_additive_noise(wave, 5.0, np.random.default_rng(0))
    assert np.mean(out != wave) == pytest.approx(0.05, abs=0.001)     # 5 % of the samples picked
    assert np.array_equal(rawboost.isd_additive_noise(wave, 0.0, np.random.default_rng(0)), wave)


def test_rawboost_ssi_adds_coloured_noise_at_the_requested_snr():
    wave = speechlike()
    out = rawboost.ssi_additive_noise(wave, SR, 20.0, np.random.default_rng(0))
    noise = out.astype(np.float64) - wave
    snr = 20 * np.log10(np.linalg.norm(wave) / np.linalg.norm(noise))
    assert snr == pytest.approx(20.0, abs=0.01)


def test_mp3_and_opus_round_trips_keep_length_and_alignment():
    wave = speechlike()
    for fn, rates in ((codecs.mp3_round_trip, (16, 64)), (codecs.opus_round_trip, (8, 32))):
        errors = []
        for kbps in rates:
            out, measured = fn(wave, SR, kbps)
            assert out.size == wave.size
            assert measured == pytest.approx(kbps, rel=0.5)
            lag = np.argmax(np.correlate(out[2000:6000], wave[2000 - 50:6000 + 50], "valid")) - 50
            assert abs(lag) <= 2, (fn.__name__, kbps, lag)        # the codec delay is removed
            errors.append(np.mean((out - wave) ** 2))
        assert errors[0] > errors[1]                               # a lower bit rate is a worse copy


def test_g711_band_limits_to_4khz_and_keeps_speech_band():
    wave = tone(500) + tone(6000, amplitude=0.3)
    for law in ("ULAW", "ALAW"):
        out = codecs.g711_round_trip(wave, SR, law)
        assert out.size == wave.size
        assert band_power(out, 5900, 6100) < 1e-3 * band_power(wave, 5900, 6100)
        assert band_power(out, 450, 550) == pytest.approx(band_power(wave, 450, 550), rel=0.05)


def test_telephone_band_and_low_pass():
    wave = tone(100) + tone(1000) + tone(6000)
    phone = channel.telephone_band(wave, SR, 300, 3400)
    assert band_power(phone, 900, 1100) > 0.8 * band_power(wave, 900, 1100)
    assert band_power(phone, 50, 150) < 0.01 * band_power(wave, 50, 150)
    assert band_power(phone, 5900, 6100) < 1e-3 * band_power(wave, 5900, 6100)
    low = channel.low_pass(wave, SR, 3000)
    assert band_power(low, 5900, 6100) < 1e-3 * band_power(wave, 5900, 6100)
    assert band_power(low, 900, 1100) > 0.8 * band_power(wave, 900, 1100)


def test_classic_transforms():
    wave = tone(1000, amplitude=0.5)
    noisy = classic.add_noise(wave, 10.0, np.random.default_rng(0))
    snr = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean((noisy - wave).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.3)
    assert classic.time_stretch(wave, SR, 1.1).size == pytest.approx(SR / 1.1, rel=0.01)
    shifted = classic.pitch_shift(wave, SR, 2.0)
    assert shifted.size == wave.size
    peak_hz = np.argmax(np.abs(np.fft.rfft(shifted))) * SR / shifted.size
    assert peak_hz == pytest.approx(1000 * 2 ** (2 / 12), rel=0.01)


def test_a_missing_codec_names_what_to_install(monkeypatch):
    import soundfile
    monkeypatch.setattr(soundfile, "available_subtypes", lambda fmt=None: {"PCM_16": "16 bit"})
    with pytest.raises(CodecUnavailable, match=r"'mp3'.*pip install 'soundfile>=0.13'"):
        check_available(expand_kinds("rawboost,mp3"))
    check_available(expand_kinds("rawboost,channel,classic"))     # no codec needed: fine
    monkeypatch.setattr(soundfile, "__version__", "0.12.1")
    monkeypatch.undo()
    check_available(expand_kinds("all"))


def test_describe_lists_every_parameter():
    p = AugmentParams((AugmentStep("telephone", (("low_hz", 312.5), ("high_hz", 3300.0)), 5),
                       AugmentStep("noise", (("snr_db", 12.25),), 99)))
    assert p.describe() == "telephone low_hz=312.5 high_hz=3300 + noise snr_db=12.25 seed=99"
    assert augment.DEFAULT_KINDS == "all"
