"""`runs/<run>/report.html`: one self-contained static page (no server, no script, no external resource).

Every picture is embedded as a base64 PNG data URI; the top-loss clips' audio is embedded as a base64
WAV (16 kHz, 16-bit mono, first `audio_seconds`) so the page can be mailed or archived as one file.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

from spec2img.fileio import write_atomic

REPORT_FILE = "report.html"
AUDIO_RATE = 16_000      # Hz of the embedded listening copies (small, and what the models see)


@dataclass
class TopLossClip:
    """One clip the model got most wrong, as the report shows it."""
    clip_id: str
    label: str               # true label
    system: str              # attack system ("" for bona fide / unknown)
    spoof_prob: float
    score: float             # log-odds of bona fide
    loss: float              # cross-entropy of the true class
    image: Path              # its spectrogram PNG
    audio: Path | None       # the original audio file (manifest path), None when unknown


def data_uri(data: bytes, mime: str) -> str:
    """Return a base64 data URI of `data`."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def png_uri(path: Path) -> str:
    """Return the PNG file at `path` as a data URI."""
    return data_uri(Path(path).read_bytes(), "image/png")


def wav_uri(path: Path, seconds: float) -> str:
    """Return the first `seconds` of an audio file as a 16 kHz 16-bit mono WAV data URI (AudioError if unreadable)."""
    import soundfile as sf
    from spec2img.audio import load_audio
    wave, _ = load_audio(Path(path), AUDIO_RATE, max_seconds=seconds)
    buf = io.BytesIO()
    sf.write(buf, wave, AUDIO_RATE, format="WAV", subtype="PCM_16")
    return data_uri(buf.getvalue(), "audio/wav")


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def metric_rows(metrics: dict) -> str:
    """Return <tr> rows for {name: {"value", "formula", "reason"?}} entries."""
    rows = []
    for name, m in metrics.items():
        if not isinstance(m, dict) or "formula" not in m:
            continue
        v = m.get("value")
        value = "n/a" if v is None else _fmt(v) + (f" ({100 * v:.2f} %)" if name == "eer" else "")
        why = f"<em>not reported: {_e(m.get('reason', ''))}</em><br>" if v is None else ""
        rows.append(f"<tr><th>{_e(name)}</th><td class='num'>{_e(value)}</td><td>{why}{_e(m['formula'])}</td></tr>")
    return "\n".join(rows)


def comparison_rows(tuned: dict, fixed: dict) -> str:
    """Return <tr> rows: metric, value at the tuned threshold, value at 0.5."""
    rows = []
    for name in tuned:
        a, b = tuned[name], fixed.get(name, {})
        if not isinstance(a, dict) or "value" not in a:
            continue
        rows.append(f"<tr><th>{_e(name)}</th><td class='num'>{_e(_fmt(a.get('value')))}</td>"
                    f"<td class='num'>{_e(_fmt(b.get('value')))}</td><td>{_e(a.get('formula', ''))}</td></tr>")
    return "\n".join(rows)


def group_rows(groups: dict) -> str:
    """Return <tr> rows: group, EER %, n spoof, n bona fide, note."""
    rows = []
    for name, g in groups.items():
        eer = f"{100 * g['eer']:.2f}" if g.get("eer") is not None else "n/a"
        rows.append(f"<tr><th>{_e(name)}</th><td class='num'>{eer}</td><td class='num'>{g.get('n_spoof', '')}</td>"
                    f"<td class='num'>{g.get('n_bonafide', '')}</td><td>{_e(g.get('reason', ''))}</td></tr>")
    return "\n".join(rows)


def top_loss_cards(clips: list[TopLossClip], audio_seconds: float) -> str:
    """Return one card per clip: its spectrogram beside an audio player of the original clip."""
    cards = []
    for c in clips:
        try:
            player = (f"<audio controls preload='auto' src='{wav_uri(c.audio, audio_seconds)}'></audio>"
                      f"<div class='small'>first {audio_seconds:g} s of {_e(c.audio)}, resampled to 16 kHz</div>"
                      if c.audio else "<div class='small'>original audio path unknown (no manifest row)</div>")
        except Exception as e:   # a moved or broken file must not sink the report: say why, keep going
            player = f"<div class='small'>original audio not playable: {_e(c.audio)}: {_e(e)}</div>"
        cards.append(
            f"<div class='card'><img class='spec' alt='spectrogram of {_e(c.clip_id)}' src='{png_uri(c.image)}'>"
            f"<div class='info'><b>{_e(c.clip_id)}</b><br>true: {_e(c.label)}"
            f"{' (' + _e(c.system) + ')' if c.system else ''}<br>spoof prob {c.spoof_prob:.4f} · "
            f"score {c.score:.3f} · loss {c.loss:.3f}{player}</div></div>")
    return "\n".join(cards) or "<p>no clips</p>"


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1150px;
color:#222;padding:0 1em} h1{font-size:1.5em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0} th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;
vertical-align:top;font-size:.92em} th{background:#f6f6f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:1em} figure{margin:0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555} .card{display:flex;gap:1em;align-items:flex-start;border:1px solid #ddd;
padding:.6em;margin:.6em 0} img.spec{width:400px;max-width:55%;image-rendering:pixelated;border:1px solid #eee}
.small{font-size:.8em;color:#666;word-break:break-all} audio{display:block;margin-top:.5em;width:100%}
.note{background:#fff8e1;border:1px solid #f0d98c;padding:.5em .8em}
"""


def render_report(title: str, summary: list[tuple[str, str]], metrics: dict, tuned: dict, fixed: dict,
                  per_attack: dict, per_condition: dict, plots: dict[str, Path], clips: list[TopLossClip],
                  notes: list[str], audio_seconds: float = 4.0) -> str:
    """Return the report page as one HTML string (all images and audio embedded)."""
    summary_html = "\n".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in summary)
    figures = "\n".join(f"<figure><img alt='{_e(name)}' src='{png_uri(p)}'><figcaption>{_e(name)}</figcaption></figure>"
                        for name, p in plots.items() if p is not None and Path(p).is_file())
    notes_html = "".join(f"<p class='note'>{_e(n)}</p>" for n in notes)
    attack_html = (f"<table><tr><th>system</th><th>EER %</th><th>spoof clips</th><th>bona fide clips</th>"
                   f"<th>note</th></tr>{group_rows(per_attack)}</table>" if per_attack else
                   "<p>no attack systems are recorded for the spoof clips of this split "
                   "(manifest.csv column system)</p>")
    cond_html = (f"<h2>EER per condition (bona fide and spoof of the same condition)</h2><table><tr><th>condition</th>"
                 f"<th>EER %</th><th>spoof clips</th><th>bona fide clips</th><th>note</th></tr>"
                 f"{group_rows(per_condition)}</table>" if per_condition else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{_e(title)}</h1>
<table>{summary_html}</table>
{notes_html}
<h2>Threshold-free metrics</h2>
<table><tr><th>metric</th><th>value</th><th>formula / source</th></tr>
{metric_rows(metrics)}
</table>
<h2>Tuned threshold vs 0.5</h2>
<table><tr><th>metric</th><th>at tuned threshold</th><th>at spoof_prob 0.5</th><th>formula</th></tr>
{comparison_rows(tuned, fixed)}
</table>
<h2>EER per attack (each spoofing system against all bona fide clips)</h2>
{attack_html}
{cond_html}
<h2>Plots</h2>
<div class="plots">
{figures}
</div>
<h2>Top losses: listen to what the model got wrong</h2>
{top_loss_cards(clips, audio_seconds)}
</body></html>
"""


def write_report(run_dir: Path, page: str) -> Path:
    """Write run_dir/report.html atomically and return its path."""
    return write_atomic(Path(run_dir) / REPORT_FILE, page)
