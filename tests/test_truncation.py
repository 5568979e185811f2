"""Truncated audio: a file holding less than its header promises is refused with both lengths, in every
format that states a length, without decoding a long file; whole files pass untouched; files that are
not audio say what they are."""
import io
import struct

import numpy as np
import pytest
import soundfile as sf
from audiogen import write_tone

from spec2img import truncation
from spec2img.audio import AudioError, TruncatedAudioError, load_audio, probe_audio

SR = 16000


def cut(path, keep: float):
    """Return `path` after keeping only the first `keep` fraction of its bytes (a copy that stopped)."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "aiff"])
def test_a_file_cut_short_is_refused_with_what_the_header_says_and_what_decodes(tmp_path, ext):
    path = cut(write_tone(tmp_path / f"clip.{ext}", seconds=30.0, sr=SR), 0.5)
    with pytest.raises(TruncatedAudioError) as caught:
        load_audio(path, SR, max_seconds=4.0)          # conversion decodes only the first 4 s
    message = str(caught.value)
    assert message.startswith("truncated: header says 30.00 s, decoded ")
    decoded = caught.value.info.duration
    assert 13.5 < decoded < 15.1, message             # half the bytes: about half the audio
    assert message.endswith(f"decoded {decoded:.2f} s")


@pytest.mark.parametrize("ext,keep", [("wav", 0.09), ("flac", 0.12), ("mp3", 0.3)])
def test_a_cut_inside_the_decoded_part_is_refused_too(tmp_path, ext, keep):
    # the case: a header promising 3 s over a fraction of a second, where the first 4 s are decoded
    # (a 3 s MP3 at 16 kHz is 4 kB: libmpg123 needs a few frames before it recognizes the file at all)
    path = cut(write_tone(tmp_path / f"clip.{ext}", seconds=3.0, sr=SR), keep)
    with pytest.raises(TruncatedAudioError, match=r"^truncated: header says 3\.00 s, decoded 0\.[1-5]\d s$"):
        load_audio(path, SR, max_seconds=4.0)


def test_an_ogg_stream_without_its_last_page_is_refused(tmp_path):
    path = cut(write_tone(tmp_path / "clip.ogg", seconds=30.0, sr=SR), 0.5)
    with pytest.raises(TruncatedAudioError, match="Ogg stream ends without its end-of-stream page, decoded"):
        load_audio(path, SR, max_seconds=4.0)


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "ogg", "aiff"])
def test_whole_files_pass_and_report_their_length(tmp_path, ext):
    path = write_tone(tmp_path / f"clip.{ext}", seconds=30.0, sr=SR)
    wave, info = load_audio(path, SR, max_seconds=4.0)
    assert wave.shape == (4 * SR,) and info.duration == pytest.approx(30.0, abs=0.01)


def test_a_cut_beyond_the_start_is_found_from_the_end_without_decoding_the_file(tmp_path, monkeypatch):
    """The check reads a little near the promised end; it never decodes the whole file."""
    path = cut(write_tone(tmp_path / "long.flac", seconds=60.0, sr=SR), 0.8)
    read_sizes = []
    original = sf.SoundFile.read

    def counting_read(self, frames=-1, *args, **kwargs):
        read_sizes.append(frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    with pytest.raises(TruncatedAudioError, match=r"header says 60\.00 s, decoded 4[5-8]\.\d\d s"):
        load_audio(path, SR, max_seconds=4.0)
    assert -1 not in read_sizes and max(read_sizes) <= 4 * SR
    assert sum(read_sizes) < 10 * SR                   # a few seconds in all, for a 60 s file


def test_truncation_is_reported_the_same_when_the_whole_file_is_decoded(tmp_path):
    # predict decodes files of up to 10 minutes whole
    for ext in ("wav", "flac", "mp3"):
        path = cut(write_tone(tmp_path / f"clip.{ext}", seconds=20.0, sr=SR), 0.5)
        with pytest.raises(TruncatedAudioError, match="header says 20.00 s"):
            load_audio(path, SR)


def riff(chunks: list[tuple[bytes, bytes]], form=b"RIFF") -> bytes:
    body = b"WAVE" + b"".join(name + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)
                              for name, data in chunks)
    return form + struct.pack("<I", len(body)) + body


def fmt_chunk(channels=1, bits=16, tag=1) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, SR, SR * align, align, bits)


def test_riff_header_frames_skip_other_chunks_and_ignore_unknown_lengths():
    data = b"\0\0" * 100
    with_list = riff([(b"fmt ", fmt_chunk()), (b"LIST", b"INFOISFT\x05\0\0\0test\0"), (b"data", data)])
    assert truncation.riff_stated_frames(io.BytesIO(with_list)) == 100
    stereo = riff([(b"fmt ", fmt_chunk(channels=2)), (b"data", data)])
    assert truncation.riff_stated_frames(io.BytesIO(stereo)) == 50
    streaming = bytearray(riff([(b"fmt ", fmt_chunk()), (b"data", data)]))
    streaming[40:44] = struct.pack("<I", 0xFFFFFFFF)      # a recorder that never wrote the length
    assert truncation.riff_stated_frames(io.BytesIO(bytes(streaming))) is None
    adpcm = riff([(b"fmt ", fmt_chunk(tag=0x11)), (b"data", data)])   # several frames per block
    assert truncation.riff_stated_frames(io.BytesIO(adpcm)) is None
    assert truncation.riff_stated_frames(io.BytesIO(b"fLaC" + b"\0" * 40)) is None


def test_an_rf64_file_cut_short_is_refused(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(str(path), np.zeros(5 * SR, np.float32) + 0.1, SR, format="RF64")
    assert truncation.header_frames(path) == 5 * SR
    cut(path, 0.5)
    with pytest.raises(TruncatedAudioError, match="header says 5.00 s, decoded 2.50 s"):
        load_audio(path, SR)


def test_a_wav_whose_recorder_never_wrote_the_length_is_read_as_it_is(tmp_path):
    path = write_tone(tmp_path / "clip.wav", seconds=2.0, sr=SR)
    data = bytearray(path.read_bytes())
    at = data.find(b"data")
    data[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    wave, info = load_audio(path, SR)
    assert wave.size == 2 * SR


def test_files_that_are_not_audio_say_what_they_are(tmp_path):
    text = tmp_path / "notes.flac"
    text.write_text("these are my notes, not a recording\n")
    with pytest.raises(AudioError, match=r"^not audio: a text file \(starts with 'these are my notes"):
        probe_audio(text)
    lfs = tmp_path / "LA_T_1000137.flac"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 51234\n")
    with pytest.raises(AudioError, match="Git LFS pointer file, not the audio"):
        load_audio(lfs, SR)
    html = tmp_path / "clip.wav"
    html.write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    with pytest.raises(AudioError, match="an HTML page"):
        load_audio(html, SR)
    binary = tmp_path / "random.flac"
    binary.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match=r"^not a readable audio file \("):
        load_audio(binary, SR)


def test_a_file_ffmpeg_opens_with_no_duration_is_not_called_zero_length(tmp_path, monkeypatch):
    """With ffmpeg installed, audioread 'opens' many non-audio files and reports 0 s: that is not audio."""
    import audioread

    class Opened:
        samplerate, channels, duration = 44100, 2, 0.0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(audioread, "audio_open", lambda path: Opened())
    path = tmp_path / "broken.flac"
    path.write_bytes(b"\x00\x01\x02" * 300)
    with pytest.raises(AudioError) as caught:
        load_audio(path, SR)
    assert "zero-length" not in str(caught.value) and str(caught.value).startswith("not a readable audio file")


def test_unreadable_files_say_permission_denied(tmp_path, monkeypatch):
    path = write_tone(tmp_path / "clip.flac", seconds=1.0, sr=SR)
    real_open = open

    def refusing_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refusing_open)
    with pytest.raises(AudioError, match="^permission denied"):
        load_audio(path, SR)


def test_the_truncation_error_crosses_process_boundaries():
    import pickle
    from spec2img.audio import AudioInfo
    error = TruncatedAudioError(AudioInfo(SR, 1, 0.25), 3.0)
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) == "truncated: header says 3.00 s, decoded 0.25 s"
    assert copy.info.duration == 0.25
