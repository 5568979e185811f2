"""The one atomic writer: a reader sees the old file or the new one, never half; failures leave nothing."""
import os

import pytest

from spec2img import fileio


def test_write_atomic_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.json"
    fileio.write_atomic(path, "one")
    fileio.write_atomic(path, b"two")
    assert path.read_text() == "two"
    assert fileio.stale_parts(path.parent) == []


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert not any(p.name != "a.txt" for p in tmp_path.iterdir())


def test_temporary_names_never_match_the_final_pattern_and_map_back(tmp_path):
    tmp = fileio.temporary_path(tmp_path / "clip.png")
    tmp.write_bytes(b"x")
    assert list(tmp_path.glob("*.png")) == []
    assert fileio.is_temporary(tmp.name) and fileio.final_name(tmp.name) == "clip.png"
    assert str(os.getpid()) in tmp.name
    assert fileio.remove_stale_parts(tmp_path) == 1 and not tmp.exists()
