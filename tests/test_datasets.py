"""Dataset adapters: tiny generated trees of every layout, auto-detection, label mapping and bad input."""
from collections import Counter
from pathlib import Path

import pytest
from audiogen import write_tone

from spec2img.datasets import LAYOUTS, detect_layout, iter_rows, label_of, split_of
from spec2img.rows import ClipRow, LayoutError


def tone(path: Path) -> Path:
    return write_tone(path, seconds=0.1)


def collect(root, layout="auto"):
    """Return (rows, log lines) of iter_rows."""
    lines = []
    rows = list(iter_rows(root, layout, log=lines.append))
    return rows, lines


# ----------------------------------------------------------------------------------------- tree builders

def make_folders(root: Path) -> Path:
    tone(root / "real" / "a.wav")
    tone(root / "real" / "b.flac")
    tone(root / "Fake" / "wavenet" / "a.wav")          # same file name as a bonafide clip
    tone(root / "Fake" / "wavenet" / "deep" / "c.wav")
    tone(root / "Fake" / "d.ogg")
    (root / "real" / "notes.txt").write_text("not audio")
    (root / "real" / "._a.wav").write_bytes(b"macOS resource fork")
    return root


def make_for(root: Path) -> Path:
    """Fake-or-Real: training|validation|testing / real|fake."""
    for split in ("training", "validation", "testing"):
        for label in ("real", "fake"):
            tone(root / split / label / "file1.wav")
    return root


def make_csv(root: Path) -> Path:
    tone(root / "audio" / "one.wav")
    tone(root / "audio" / "two.flac")
    tone(root / "other" / "one.wav")
    (root / "MANIFEST.csv").write_text(
        "file,label,split,system,speaker,condition,speaker_or_dataset\n"
        "audio/one.wav,Real,training,,spk1,studio,LJSpeech\n"
        "audio/two.flac,fake,dev,A07,spk2,mp3,VCTK\n"
        "other/one.wav,bona-fide,eval,,spk1,,LJSpeech\n")
    return root


def write_lines(path: Path, lines) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def make_asvspoof2019(root: Path) -> Path:
    la = root / "LA"
    protocols = la / "ASVspoof2019_LA_cm_protocols"
    trials = {"train": ["LA_0079 LA_T_1000001 - - bonafide", "LA_0079 LA_T_1000002 - A01 spoof",
                        "LA_0080 LA_T_1000003 - A02 spoof"],
              "dev": ["LA_0070 LA_D_1000001 - - bonafide", "LA_0070 LA_D_1000002 - A03 spoof"],
              "eval": ["LA_0001 LA_E_1000001 - - bonafide", "LA_0002 LA_E_1000002 - A19 spoof"]}
    suffix = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}
    for part, lines in trials.items():
        write_lines(protocols / f"ASVspoof2019.LA.cm.{suffix[part]}.txt", lines)
        for line in lines:
            tone(la / f"ASVspoof2019_LA_{part}" / "flac" / f"{line.split()[1]}.flac")
    tone(la / "ASVspoof2019_LA_train" / "flac" / "LA_T_9999999.flac")     # not a trial: must not be ingested
    return root


def make_asvspoof2021(root: Path) -> Path:
    write_lines(root / "keys" / "LA" / "CM" / "trial_metadata.txt", [
        "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval",
        "LA_0012 LA_E_5013670 none - bonafide bonafide notrim progress"])
    for trial in ("LA_E_9332881", "LA_E_5013670"):
        tone(root / "ASVspoof2021_LA_eval" / "flac" / f"{trial}.flac")
    write_lines(root / "DF-keys-full" / "keys" / "DF" / "CM" / "trial_metadata.txt", [
        "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -",
        "TEF2 DF_E_2000013 low_m4a vcc2020 bonafide bonafide notrim eval bonafide - - - -"])
    tone(root / "ASVspoof2021_DF_eval_part00" / "ASVspoof2021_DF_eval" / "flac" / "DF_E_2000011.flac")
    tone(root / "ASVspoof2021_DF_eval_part01" / "ASVspoof2021_DF_eval" / "flac" / "DF_E_2000013.flac")
    return root


def make_asvspoof5(root: Path) -> Path:
    protocols = root / "ASVspoof5_protocols"
    write_lines(protocols / "ASVspoof5.train.tsv", [
        "T_4850 T_0000000000 F - - - AC3 A05 spoof -",
        "T_4851 T_0000000001 M - - - bonafide bonafide bonafide -"])
    write_lines(protocols / "ASVspoof5.dev.track_1.tsv", [
        "D_0062 D_0000000001 F mp3 4 1 AC2 A11 spoof -"])
    for name, folder in (("T_0000000000", "flac_T"), ("T_0000000001", "flac_T"), ("D_0000000001", "flac_D")):
        tone(root / folder / f"{name}.flac")
    return root


def make_inthewild(root: Path) -> Path:
    release = root / "release_in_the_wild"
    write_lines(release / "meta.csv", ["file,speaker,label", "0.wav,Alec Guinness,spoof",
                                       "1.wav,Alec Guinness,bona-fide", "2.wav,Barack Obama,bona-fide"])
    for name in ("0.wav", "1.wav", "2.wav"):
        tone(release / name)
    return root


def make_asvspoof2017(root: Path) -> Path:
    lines = {"train": ["T_1000001.wav genuine M0001 S01 - - -", "T_1001509.wav spoof M0002 S02 E02 P02 R02"],
             "dev": ["D_1000001.wav genuine M0010 S03 - - -", "D_1000002 spoof"],
             "eval": ["E_1000001.wav spoof M0020 S05 E05 P05 R05"]}
    suffix = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}
    for part, part_lines in lines.items():
        write_lines(root / "protocol_V2" / f"ASVspoof2017_V2_{suffix[part]}.txt", part_lines)
        for line in part_lines:
            name = line.split()[0]
            tone(root / f"ASVspoof2017_V2_{part}" / (name if name.endswith(".wav") else name + ".wav"))
    return root


BUILDERS = {"folders": make_folders, "csv": make_csv, "asvspoof2019": make_asvspoof2019,
            "asvspoof2021": make_asvspoof2021, "asvspoof5": make_asvspoof5, "inthewild": make_inthewild,
            "asvspoof2017": make_asvspoof2017}


# ----------------------------------------------------------------------------------------- detection

@pytest.mark.parametrize("layout", LAYOUTS)
def test_auto_detection_picks_each_layout_and_says_so(tmp_path, layout):
    root = BUILDERS[layout](tmp_path / "data")
    assert detect_layout(root) == layout
    rows, log = collect(root)
    assert log[0].startswith(f"dataset layout: {layout} (found ")
    assert rows and all(isinstance(r, ClipRow) for r in rows)
    assert all(r.label in ("bonafide", "spoof") and r.path.is_file() for r in rows)
    assert len({r.clip_id for r in rows}) == len(rows)
    assert all("/" not in r.clip_id and not r.clip_id.startswith(".") for r in rows)
    assert {r.clip_id for r in rows} == {r.clip_id for r in collect(root, layout)[0]}   # forced == auto


def test_rows_are_streamed_and_audio_is_never_opened(tmp_path):
    root = make_asvspoof2019(tmp_path)
    (root / "LA" / "ASVspoof2019_LA_dev" / "flac" / "LA_D_1000001.flac").write_bytes(b"not audio at all")
    stream = iter_rows(root, log=lambda line: None)
    assert iter(stream) is stream                   # a generator, not a list
    rows = list(stream)
    assert "LA_D_1000001" in {r.clip_id for r in rows}


def test_unknown_layout_name_lists_known_ones(tmp_path):
    with pytest.raises(LayoutError, match="known layouts: auto, folders, csv, asvspoof2019"):
        iter_rows(tmp_path, "asvspoof2099")


def test_nothing_recognizable_says_what_was_looked_for(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(LayoutError) as err:
        detect_layout(tmp_path)
    assert "no known dataset layout" in str(err.value)
    for layout in LAYOUTS:
        assert f"{layout}:" in str(err.value)
    with pytest.raises(LayoutError, match="no such file or folder"):
        detect_layout(tmp_path / "missing")


def test_2021_audio_without_keys_says_to_fetch_keys(tmp_path):
    tone(tmp_path / "ASVspoof2021_LA_eval" / "flac" / "LA_E_1.flac")
    with pytest.raises(LayoutError, match="keys/LA/CM/trial_metadata.txt"):
        detect_layout(tmp_path)


# ----------------------------------------------------------------------------------------- folders

@pytest.mark.parametrize("name,label", [
    ("bonafide", "bonafide"), ("Bona-Fide", "bonafide"), ("bona_fide", "bonafide"), ("genuine", "bonafide"),
    ("REAL", "bonafide"), ("human", "bonafide"), ("original", "bonafide"), ("spoof", "spoof"),
    ("spoofed", "spoof"), ("Fake", "spoof"), ("synthetic", "spoof"), ("deepfake", "spoof"),
    ("generated", "spoof"), ("speech", None), ("train", None)])
def test_label_synonyms(name, label):
    assert label_of(name) == label


@pytest.mark.parametrize("name,split", [
    ("train", "train"), ("Training", "train"), ("trn", "train"), ("val", "val"), ("valid", "val"),
    ("validation", "val"), ("dev", "val"), ("development", "val"), ("test", "test"), ("testing", "test"),
    ("eval", "test"), ("evaluation", "test"), ("real", None)])
def test_split_synonyms(name, split):
    assert split_of(name) == split


def test_folders_layout_maps_labels_systems_and_ids(tmp_path):
    rows, log = collect(make_folders(tmp_path))
    assert "folder 'real' -> bonafide" in log and "folder 'Fake' -> spoof" in log
    by_path = {r.path.relative_to(tmp_path).as_posix(): r for r in rows}
    assert sorted(by_path) == ["Fake/d.ogg", "Fake/wavenet/a.wav", "Fake/wavenet/deep/c.wav",
                               "real/a.wav", "real/b.flac"]                 # no .txt, no ._ file
    assert by_path["Fake/wavenet/deep/c.wav"].system == "wavenet"
    assert by_path["Fake/d.ogg"].system == "" and by_path["real/a.wav"].label == "bonafide"
    assert by_path["Fake/wavenet/a.wav"].clip_id == "Fake__wavenet__a"
    assert by_path["real/a.wav"].clip_id == "real__a"
    assert all(r.split == "" for r in rows)
    assert [r.clip_id for r in rows] == [r.clip_id for r in collect(tmp_path)[0]]   # deterministic order


def test_fake_or_real_layout(tmp_path):
    rows, log = collect(make_for(tmp_path))
    for line in ("folder 'training' -> split train", "folder 'validation' -> split val",
                 "folder 'testing' -> split test", "folder 'real' -> bonafide", "folder 'fake' -> spoof"):
        assert line in log
    assert Counter((r.split, r.label) for r in rows) == {(s, lab): 1 for s in ("train", "val", "test")
                                                        for lab in ("bonafide", "spoof")}
    assert len({r.clip_id for r in rows}) == 6         # same file name in all six folders, still unique ids


def test_unknown_top_folder_is_named(tmp_path):
    tone(tmp_path / "real" / "a.wav")
    tone(tmp_path / "misc" / "b.wav")
    with pytest.raises(LayoutError) as err:
        iter_rows(tmp_path, log=lambda line: None)
    assert "'misc'" in str(err.value) and "fake" in str(err.value) and "training" in str(err.value)


def test_unknown_label_folder_inside_split_is_named(tmp_path):
    tone(tmp_path / "train" / "real" / "a.wav")
    tone(tmp_path / "train" / "maybe" / "b.wav")
    with pytest.raises(LayoutError, match="maybe"):
        iter_rows(tmp_path, log=lambda line: None)


def test_id_collision_names_both_files(tmp_path):
    tone(tmp_path / "real" / "a b.wav")
    tone(tmp_path / "real" / "a_b.wav")
    with pytest.raises(LayoutError) as err:
        collect(tmp_path)
    assert "a b.wav" in str(err.value) and "a_b.wav" in str(err.value)


def test_label_folders_without_audio_is_an_error(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    with pytest.raises(LayoutError, match="no audio files"):
        collect(tmp_path)


# ----------------------------------------------------------------------------------------- csv

def test_csv_manifest_columns_and_synonyms(tmp_path):
    make_csv(tmp_path)
    for root in (tmp_path, tmp_path / "MANIFEST.csv"):
        rows, log = collect(root)
        assert any("ignoring speaker_or_dataset" in line for line in log)
        assert [(r.clip_id, r.label, r.split, r.system, r.speaker, r.condition) for r in rows] == [
            ("audio__one", "bonafide", "train", "", "spk1", "studio"),
            ("audio__two", "spoof", "val", "A07", "spk2", "mp3"),
            ("other__one", "bonafide", "test", "", "spk1", "")]
        assert rows[1].path == tmp_path / "audio" / "two.flac"


def test_csv_subset_and_family_columns_are_kept(tmp_path):
    tone(tmp_path / "a.wav")
    tone(tmp_path / "b.wav")
    (tmp_path / "m.csv").write_text("file,label,subset,family\na.wav,spoof,progress,neural_vocoder_autoregressive\n"
                                    "b.wav,bonafide,eval,\n")
    rows, log = collect(tmp_path / "m.csv")
    assert [(r.subset, r.family) for r in rows] == [("progress", "neural_vocoder_autoregressive"), ("eval", "")]
    assert any("subset,family" in line for line in log)


def test_csv_speaker_or_dataset_is_not_a_speaker(tmp_path):
    tone(tmp_path / "a.wav")
    (tmp_path / "m.csv").write_text("file,label,speaker_or_dataset\na.wav,spoof,LJSpeech\n")
    rows, _ = collect(tmp_path / "m.csv")
    assert rows[0].speaker == "" and rows[0].label == "spoof"


def test_csv_unknown_label_names_file_and_line(tmp_path):
    tone(tmp_path / "a.wav")
    tone(tmp_path / "b.wav")
    (tmp_path / "m.csv").write_text("file,label\na.wav,real\nb.wav,maybe\n")
    with pytest.raises(LayoutError) as err:
        collect(tmp_path / "m.csv")
    assert "m.csv:3" in str(err.value) and "'maybe'" in str(err.value) and "bonafide" in str(err.value)


def test_csv_missing_audio_names_file_and_line(tmp_path):
    tone(tmp_path / "a.wav")
    (tmp_path / "m.csv").write_text("file,label\na.wav,real\n\nghost.wav,fake\n")
    with pytest.raises(LayoutError) as err:
        collect(tmp_path)
    assert "m.csv:4" in str(err.value) and "ghost.wav" in str(err.value)


def test_csv_without_label_column_is_rejected(tmp_path):
    tone(tmp_path / "a.wav")
    (tmp_path / "m.csv").write_text("file,kind\na.wav,real\n")
    with pytest.raises(LayoutError, match="'file' and 'label'"):
        collect(tmp_path / "m.csv")


# ----------------------------------------------------------------------------------------- ASVspoof 2019

def test_asvspoof2019_follows_the_protocol_only(tmp_path):
    make_asvspoof2019(tmp_path)
    for root in (tmp_path, tmp_path / "LA"):
        rows, _ = collect(root)
        ids = {r.clip_id for r in rows}
        assert len(rows) == 7 and "LA_T_9999999" not in ids
        assert Counter(r.split for r in rows) == {"train": 3, "val": 2, "test": 2}
        first, second = rows[0], rows[1]
        assert (first.clip_id, first.label, first.system, first.speaker) == ("LA_T_1000001", "bonafide", "", "LA_0079")
        assert (second.label, second.system) == ("spoof", "A01")
        assert second.path == tmp_path / "LA" / "ASVspoof2019_LA_train" / "flac" / "LA_T_1000002.flac"


def test_asvspoof2019_missing_protocol_is_named(tmp_path):
    make_asvspoof2019(tmp_path)
    dev = tmp_path / "LA" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.dev.trl.txt"
    dev.unlink()
    with pytest.raises(LayoutError, match="ASVspoof2019.LA.cm.dev.trl.txt: protocol file missing"):
        iter_rows(tmp_path, log=lambda line: None)


def test_asvspoof2019_without_eval_protocol_logs_a_notice(tmp_path):
    make_asvspoof2019(tmp_path)
    (tmp_path / "LA" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.eval.trl.txt").unlink()
    rows, log = collect(tmp_path)
    assert {r.split for r in rows} == {"train", "val"}
    assert any("eval.trl.txt not found" in line for line in log)


def test_asvspoof2019_line_naming_missing_audio(tmp_path):
    make_asvspoof2019(tmp_path)
    (tmp_path / "LA" / "ASVspoof2019_LA_dev" / "flac" / "LA_D_1000002.flac").unlink()
    with pytest.raises(LayoutError) as err:
        collect(tmp_path)
    assert "ASVspoof2019.LA.cm.dev.trl.txt:2" in str(err.value) and "LA_D_1000002.flac" in str(err.value)


def test_asvspoof2019_malformed_and_unknown_key_lines(tmp_path):
    make_asvspoof2019(tmp_path)
    train = tmp_path / "LA" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt"
    write_lines(train, ["LA_0079 LA_T_1000001 - - bonafide", "LA_0079 LA_T_1000002 A01"])
    with pytest.raises(LayoutError, match=r"train.trn.txt:2: malformed line"):
        collect(tmp_path)
    write_lines(train, ["LA_0079 LA_T_1000001 - - bonafide", "", "LA_0079 LA_T_1000002 - A01 spooof"])
    with pytest.raises(LayoutError, match=r"train.trn.txt:3: unknown label 'spooof'"):
        collect(tmp_path)


# ----------------------------------------------------------------------------------------- ASVspoof 2021 / 5

def test_asvspoof2021_la_and_df(tmp_path):
    rows, _ = collect(make_asvspoof2021(tmp_path))
    by_id = {r.clip_id: r for r in rows}
    assert sorted(by_id) == ["DF_E_2000011", "DF_E_2000013", "LA_E_5013670", "LA_E_9332881"]
    assert all(r.split == "test" for r in rows)
    la_spoof, la_bona = by_id["LA_E_9332881"], by_id["LA_E_5013670"]
    assert (la_spoof.label, la_spoof.system, la_spoof.condition, la_spoof.speaker, la_spoof.subset) == (
        "spoof", "A07", "LA-C2-alaw", "LA_0009", "eval")          # official tag C2, pooled over transmission
    assert (la_bona.label, la_bona.system, la_bona.subset, la_bona.condition) == ("bonafide", "", "progress", "LA-C1-none")
    df_spoof, df_bona = by_id["DF_E_2000011"], by_id["DF_E_2000013"]
    assert (df_spoof.condition, df_spoof.system, df_spoof.family, df_spoof.subset) == (
        "DF-C1-nocodec", "A14", "traditional_vocoder", "progress")
    assert (df_bona.condition, df_bona.family, df_bona.subset) == ("DF-C4-low_m4a", "", "eval")
    assert by_id["DF_E_2000013"].path.parent.parent.parent.name == "ASVspoof2021_DF_eval_part01"


def test_asvspoof2021_missing_trial_audio(tmp_path):
    make_asvspoof2021(tmp_path)
    (tmp_path / "ASVspoof2021_LA_eval" / "flac" / "LA_E_5013670.flac").unlink()
    with pytest.raises(LayoutError, match=r"trial_metadata.txt:2: audio file .*LA_E_5013670.flac not found"):
        collect(tmp_path)


def test_asvspoof5_rows(tmp_path):
    rows, log = collect(make_asvspoof5(tmp_path))
    assert [(r.clip_id, r.label, r.split, r.system, r.speaker, r.condition) for r in rows] == [
        ("T_0000000000", "spoof", "train", "A05", "T_4850", "none"),
        ("T_0000000001", "bonafide", "train", "", "T_4851", "none"),
        ("D_0000000001", "spoof", "val", "A11", "D_0062", "mp3")]
    assert any("ASVspoof5.eval.track_1.tsv not found" in line for line in log)


# ----------------------------------------------------------------------------------------- In-the-Wild / 2017

def test_inthewild_rows(tmp_path):
    rows, _ = collect(make_inthewild(tmp_path))
    assert [(r.clip_id, r.label, r.speaker, r.split) for r in rows] == [
        ("0", "spoof", "Alec Guinness", ""), ("1", "bonafide", "Alec Guinness", ""),
        ("2", "bonafide", "Barack Obama", "")]
    assert detect_layout(tmp_path / "release_in_the_wild" / "meta.csv") == "inthewild"


def test_asvspoof2017_rows(tmp_path):
    rows, _ = collect(make_asvspoof2017(tmp_path))
    by_id = {r.clip_id: r for r in rows}
    assert Counter(r.split for r in rows) == {"train": 2, "val": 2, "test": 1}
    assert (by_id["T_1000001"].label, by_id["T_1000001"].system) == ("bonafide", "")
    spoof = by_id["T_1001509"]
    assert (spoof.system, spoof.condition, spoof.speaker) == ("P02-R02", "E02", "M0002")
    assert by_id["D_1000002"].label == "spoof" and by_id["D_1000002"].path.name == "D_1000002.wav"


def test_asvspoof2019_pa_environment_is_the_condition(tmp_path):
    protocols = tmp_path / "ASVspoof2019_PA_cm_protocols"
    write_lines(protocols / "ASVspoof2019.PA.cm.train.trn.txt", ["PA_0079 PA_T_0000001 aaa - bonafide",
                                                                  "PA_0079 PA_T_0000003 aaa AA spoof"])
    write_lines(protocols / "ASVspoof2019.PA.cm.dev.trl.txt", ["PA_0069 PA_D_0000001 bbc CB spoof"])
    for part, name in (("train", "PA_T_0000001"), ("train", "PA_T_0000003"), ("dev", "PA_D_0000001")):
        tone(tmp_path / f"ASVspoof2019_PA_{part}" / "flac" / f"{name}.flac")
    rows, _ = collect(tmp_path)
    assert [(r.clip_id, r.label, r.split, r.system, r.condition) for r in rows] == [
        ("PA_T_0000001", "bonafide", "train", "", "aaa"), ("PA_T_0000003", "spoof", "train", "AA", "aaa"),
        ("PA_D_0000001", "spoof", "val", "CB", "bbc")]
