"""Audit of an images folder: hand-counted numbers in audit.json, the plots exist and open."""
import csv
import json

import pytest
from PIL import Image

from spec2img.audit import audit_rows, main, reason_group, write_audit
from spec2img.manifest import COLUMNS


def row(clip_id, label, split, status="ok", duration="3.0", sr="16000", channels="1", peak="-6.0",
        rms="-20.0", system=""):
    image = f"{split}/{label}/{clip_id}.png" if status == "ok" else ""
    return {**dict.fromkeys(COLUMNS, ""), "clip_id": clip_id, "path": f"/data/{clip_id}.wav", "label": label,
            "split": split, "system": system, "duration": duration, "sample_rate": sr, "channels": channels,
            "status": status, "image": image, "peak_dbfs": peak, "rms_dbfs": rms}


ROWS = [
    row("a", "bonafide", "train", duration="2.0", sr="16000"),
    row("a__aug1", "bonafide", "train"),
    row("b", "bonafide", "val", duration="6.0", sr="44100", channels="2", peak="-1.0"),
    row("c", "spoof", "train", duration="4.0", sr="22050", system="A07", peak="-3.0"),
    row("d", "spoof", "test", duration="5.0", sr="22050", system="A08", peak="-9.0"),
    row("e", "spoof", "train", status="skipped: not a readable audio file (Error opening 'e.wav')",
        duration="", sr="", channels="", peak="", rms=""),
    row("f", "spoof", "train", status="skipped: not a readable audio file (Error opening 'f.wav')",
        duration="", sr="", channels="", peak="", rms=""),
    row("g", "bonafide", "test", status="skipped: silent (peak below -90 dBFS)", peak="-240.0"),
]


def test_audit_numbers_match_a_hand_count():
    report = audit_rows(ROWS, clip_seconds=4.0)
    assert report["clips"] == 7 and report["converted"] == 4 and report["augmented_images"] == 1
    assert report["counts"] == {"train": {"bonafide": 1, "spoof": 1}, "val": {"bonafide": 1, "spoof": 0},
                                "test": {"bonafide": 0, "spoof": 1}}
    assert report["images"]["train"] == {"bonafide": 2, "spoof": 1}
    assert report["sample_rates"] == {"bonafide": {"16000": 1, "44100": 1}, "spoof": {"22050": 2}}
    assert report["channels"] == {"bonafide": {"1": 1, "2": 1}, "spoof": {"1": 2}}
    assert report["duration_seconds"]["spoof"] == {"count": 2, "min": 4.0, "mean": 4.5, "median": 4.5, "max": 5.0}
    assert report["peak_dbfs"]["bonafide"]["min"] == -6.0 and report["peak_dbfs"]["spoof"]["mean"] == -6.0
    assert report["padded_clips"] == {"bonafide": 1, "spoof": 0}
    assert report["cropped_clips"] == {"bonafide": 1, "spoof": 1}
    assert report["skipped"]["count"] == 3
    assert report["skipped"]["reasons"] == {"not a readable audio file": 2, "silent": 1}
    assert report["skipped"]["first"][0] == {"clip_id": "e", "path": "/data/e.wav",
                                             "reason": "not a readable audio file (Error opening 'e.wav')"}
    assert report["systems"]["train"] == {"-": 1, "A07": 1}


def test_reason_group():
    assert reason_group("skipped: cannot decode audio (Error : flac decoder lost sync.)") == "cannot decode audio"
    assert reason_group("skipped: empty file (0 bytes)") == "empty file"


def test_write_audit_files_and_cli(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    with open(images / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(ROWS)
    (images / "spec.json").write_text(json.dumps({"duration": 4.0}))
    assert main([str(images)]) == 0
    assert "4 clips converted (1 augmented images), 3 skipped" in capsys.readouterr().out
    folder = images / "audit"
    report = json.loads((folder / "audit.json").read_text())
    assert report["converted"] == 4
    for name in ("counts.png", "formats.png", "durations.png", "levels.png"):
        with Image.open(folder / name) as plot:
            assert plot.size[0] > 300 and plot.size[1] > 200
    assert sorted(report["plots"]) == sorted(["counts.png", "formats.png", "durations.png", "levels.png"])
    assert not list(folder.glob(".*"))               # no temporary files left


def test_audit_without_manifest_says_what_to_run(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "spec2img SRC" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        write_audit(tmp_path)
