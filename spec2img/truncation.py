"""Audio files cut short: the length a file's header states, and how much of it can really be decoded.

A copy interrupted part-way, a download that stopped, or a recorder killed before it finished leaves a
file whose header promises more than it holds. Decoders do not complain about the missing part (they
clamp or stop early), so conversion would repeat the decoded start to fill the clip. What states a
length, and how the part actually there is measured without decoding a whole long file:

  WAV, RF64, RIFX   the data chunk's byte size / block align (`riff_stated_frames`); libsndfile's frame
                    count is what the file holds (it clamps to the file size)
  AIFF, AIFF-C      COMM's numSampleFrames (`aiff_stated_frames`); the same clamped frame count
  FLAC              STREAMINFO's total samples, as libsndfile reports them; whether it all decodes is
                    seen by reading just before the promised end (`decodable_frames`)
  MP3               the Xing/Info (LAME) or VBRI header's stream byte count against the bytes in the
                    file (`mp3_stream_bytes`: no decoding; seeking in an MP3 makes libmpg123 print errors)
  for a FLAC or MP3 found short, where it stops decoding is found by bisecting with seeks (about 20
  short reads; an MP3 starts from the share of its bytes present), then read on to the cut: for a file
  promising one hour that costs about as much as decoding it whole (libFLAC takes a second over the
  block holding the cut), while a whole file is checked in milliseconds
  Ogg (Vorbis, Opus) no stated length: the stream must end with a complete page flagged end-of-stream
                    (`ogg_ends_cleanly`); the decoded length is that of the last complete page
A format without a stated length (an MP3 without a Xing/VBRI header, formats read through ffmpeg) is
checked only as far as it is decoded.
"""
from __future__ import annotations

import os
import struct
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable

TOLERANCE_SECONDS = 0.01     # a shortfall below this (a rounding in some writers' headers) is accepted
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # data sizes that streaming writers leave when the length is not known
_PCM_TAGS = (1, 3, 6, 7)          # WAVE_FORMAT_PCM, IEEE_FLOAT, ALAW, MULAW: block_align bytes = one frame
_EXTENSIBLE = 0xFFFE
_OGG_MAX_PAGE = 27 + 255 + 255 * 255   # header + segment table + body, bytes


def riff_stated_frames(f: BinaryIO) -> int | None:
    """Return the frames a WAV/RF64/RIFX header promises (data bytes / block align), or None when the file
    is not one, the length is unknown (0 or 0xFFFFFFFF) or the codec packs several frames per block."""
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64", b"BW64") or head[8:12] != b"WAVE":
        return None
    endian = ">" if head[:4] == b"RIFX" else "<"
    pos, block_align, ds64_data = 12, None, None
    for _ in range(64):                                     # chunks before `data`: fmt, ds64, LIST, bext...
        f.seek(pos)
        chunk = f.read(8)
        if len(chunk) < 8:
            return None
        name, size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
        if name == b"ds64":
            body = f.read(16)
            ds64_data = struct.unpack("<Q", body[8:16])[0] if len(body) == 16 else None
        elif name == b"fmt ":
            body = f.read(16)
            if len(body) < 16:
                return None
            tag, _, _, _, block_align = struct.unpack(endian + "HHIIH", body[:14])
            if tag not in _PCM_TAGS and tag != _EXTENSIBLE:
                return None
        elif name == b"data":
            if size == 0xFFFFFFFF and ds64_data is not None:
                size = ds64_data
            if not block_align or size in _UNKNOWN_SIZES:
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def aiff_stated_frames(f: BinaryIO) -> int | None:
    """Return the sample frames an AIFF/AIFF-C COMM chunk states, or None when the file is not one."""
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
        return None
    pos = 12
    for _ in range(64):
        f.seek(pos)
        chunk = f.read(8)
        if len(chunk) < 8:
            return None
        name, size = chunk[:4], struct.unpack(">I", chunk[4:])[0]
        if name == b"COMM":
            body = f.read(6)
            return struct.unpack(">I", body[2:6])[0] if len(body) == 6 else None
        pos += 8 + size + (size & 1)
    return None


def header_frames(path: Path) -> int | None:
    """Return the frames a WAV-family or AIFF header states (None for other formats or an unknown length)."""
    with open(path, "rb") as f:
        for parse in (riff_stated_frames, aiff_stated_frames):
            frames = parse(f)
            if frames is not None:
                return frames
    return None


def is_ogg(path: Path) -> bool:
    """Return True when the file starts with an Ogg page."""
    with open(path, "rb") as f:
        return f.read(4) == b"OggS"


def ogg_ends_cleanly(path: Path) -> bool:
    """Return True when the file's last bytes are one complete Ogg page flagged end-of-stream (0x04)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        start = max(0, size - _OGG_MAX_PAGE - 4)
        f.seek(start)
        tail = f.read()
    at = tail.rfind(b"OggS")
    while at >= 0:                      # the last capture pattern may sit inside compressed data: try each
        header = tail[at:at + 27]
        if len(header) == 27:
            n_segments = header[26]
            table = tail[at + 27:at + 27 + n_segments]
            if len(table) == n_segments and at + 27 + n_segments + sum(table) == len(tail):
                return bool(header[5] & 0x04)
        at = tail.rfind(b"OggS", 0, at)
    return False


_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits


def mp3_stream_bytes(f: BinaryIO, file_size: int) -> tuple[int, int] | None:
    """Return (bytes the Xing/Info or VBRI header states, bytes of the stream actually in the file) of an
    MP3, or None when it has no such header (its length is then only an estimate, nothing to check)."""
    f.seek(0)
    head = f.read(10)
    start = 0
    if head[:3] == b"ID3" and len(head) == 10:          # ID3v2 tag: syncsafe size, optional footer
        start = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | head[9] & 0x7F)
        start += 10 if head[5] & 0x10 else 0
    f.seek(start)
    block = f.read(4096)
    at = next((i for i in range(len(block) - 3) if block[i] == 0xFF and block[i + 1] & 0xE0 == 0xE0), -1)
    if at < 0:
        return None
    version, channel_mode = (block[at + 1] >> 3) & 3, block[at + 3] >> 6
    side_info = (32 if channel_mode != 3 else 17) if version == 3 else (17 if channel_mode != 3 else 9)
    frame = block[at:]
    stated = None
    xing = frame[4 + side_info:4 + side_info + 16]
    if xing[:4] in (b"Xing", b"Info") and len(xing) >= 8:
        flags = struct.unpack(">I", xing[4:8])[0]
        offset = 8 + (4 if flags & 1 else 0)
        if flags & 2 and len(xing) >= offset + 4:
            stated = struct.unpack(">I", xing[offset:offset + 4])[0]
    elif frame[36:40] == b"VBRI" and len(frame) >= 54:
        stated = struct.unpack(">I", frame[46:50])[0]
    if not stated:
        return None
    end = file_size
    f.seek(max(0, file_size - 128))
    if f.read(3) == b"TAG":                              # ID3v1 tag at the end
        end -= 128
    f.seek(max(0, end - 32))
    if f.read(8) == b"APETAGEX":                         # APEv2 footer: its size covers items + footer
        end -= struct.unpack("<I", f.read(8)[4:8])[0] + 32
    return stated, max(0, end - start - at)


@contextmanager
def quiet_c_stderr():
    """Send what C libraries print on file descriptor 2 to /dev/null for the block (libmpg123 prints an
    error line for every seek into a bit reservoir). Python's own sys.stderr is untouched."""
    try:
        sys.stderr.flush()
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def decodable_frames(open_file: Callable, stated: int, known_good: int, resolution: int,
                     hint: int | None = None, opened=None) -> int:
    """Return how many frames of a file promising `stated` can be decoded (FLAC, MP3), reading a little at a
    time: one read just before the promised end when the file is whole, else bisection by seeking, then an
    exact count over the last `resolution` frames. `open_file()` opens a fresh soundfile.SoundFile (after a
    failed seek libsndfile's handle is unusable); frames before `known_good` are known to decode; `hint`, a
    position a little before the expected end of the audio (an MP3's share of its stated bytes), replaces
    the bisection when it decodes: the count then reads on from there (libmpg123's seeks scan the file, so
    each costs as much as decoding a tenth of it). `opened`, the file already open, serves the first read."""
    tail = max(1, min(stated, resolution))

    def readable(position: int, frames: int = 1) -> int:
        try:
            with open_file() as f:
                f.seek(position)
                return len(f.read(frames, dtype="float32", always_2d=True))
        except Exception:              # libsndfile: "Internal psf_fseek() failed", "decoder lost sync"
            return 0

    if opened is not None:
        try:
            opened.seek(stated - tail)
            whole = len(opened.read(tail, dtype="float32", always_2d=True)) >= tail
        except Exception:
            whole = False
    else:
        whole = readable(stated - tail, tail) >= tail
    if whole:
        return stated
    lo, hi = max(0, min(known_good, stated) - 1), stated     # a read at lo gives samples; at hi none
    if not readable(lo):
        lo = 0
    if hint is not None and lo < hint < stated and readable(hint):
        lo, hi = hint, lo                  # read on from the hint: no bisection
    while hi - lo > resolution:
        mid = (lo + hi) // 2
        if readable(mid):
            lo = mid
        else:
            hi = mid
    count, block = lo, max(1, min(1024, resolution))   # a failed read loses its block: keep it small
    block = block if hint is None else 16 * block      # reading on from a hint may cover minutes
    try:
        with open_file() as f:
            f.seek(lo)
            while count < stated:
                n = len(f.read(block, dtype="float32", always_2d=True))
                if n == 0:
                    break
                count += n
    except Exception:                  # the block holding the cut: count what came before it
        pass
    return count
