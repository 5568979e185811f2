"""`report.html` of an evaluation: one self-contained static page (no server, no script, no external resource).

Every picture is embedded as a base64 PNG data URI; the top-loss clips' audio is embedded as a base64
WAV (16 kHz, 16-bit mono, first `audio_seconds`) so the page can be mailed or archived as one file.
Sections: summary and notes, shortcut warnings, threshold-free metrics with 95 % intervals, calibration
(raw against calibrated LLRs, reliability diagram), decisions at the tuned threshold and at 0.5, EER per
attack / condition / attack family, key subsets, the shortcut audit, the plots, and the top-loss clips.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spec2img.rows import LABELS

AUDIO_RATE = 16_000      # Hz of the embedded listening copies (small, and what the models see)
CI_NAMES = {"eer": "EER", "min_dcf": "minDCF", "roc_auc": "ROC-AUC"}


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
    heatmap: Path | None = None  # its attribution heat map (classify.explain), None when not explained


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return -log softmax(logits)[true class] per clip (float64)."""
    z = np.asarray(logits, np.float64)
    logp = z - np.logaddexp(z[:, 0], z[:, 1])[:, None]
    return -logp[np.arange(len(labels)), labels]


def top_loss_clips(s, k: int) -> list[TopLossClip]:
    """Return the k clips of a scored split (classify.scoring.SplitScores) with the largest loss of their true class."""
    loss = cross_entropy(s.logits, s.label)
    order = np.argsort(-loss, kind="stable")[:k]
    prob, score, system, audio = s.spoof_prob, s.score, s.system, s.audio
    return [TopLossClip(s.clip_id[i], LABELS[s.label[i]], system[i], float(prob[i]), float(score[i]),
                        float(loss[i]), s.png[i], Path(audio[i]) if audio[i] else None) for i in order]


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


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def _cue(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _table(header: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return f"<table><tr>{head}</tr>\n" + "\n".join(rows) + "</table>"


def metric_rows(metrics: dict, ci: dict | None = None) -> str:
    """Return <tr> rows for {name: {"value", "formula", "reason"?}} entries, with the 95 % interval when known."""
    rows = []
    ci = ci or {}
    for name, m in metrics.items():
        if not isinstance(m, dict) or "formula" not in m:
            continue
        v = m.get("value")
        value = "n/a" if v is None else _fmt(v) + (f" ({100 * v:.2f} %)" if name == "eer" else "")
        interval = ci.get(name)
        span = f"[{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else ""
        why = f"<em>not reported: {_e(m.get('reason', ''))}</em><br>" if v is None else ""
        rows.append(f"<tr><th>{_e(name)}</th><td class='num'>{_e(value)}</td><td class='num'>{_e(span)}</td>"
                    f"<td>{why}{_e(m['formula'])}</td></tr>")
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
        rows.append(f"<tr><th>{_e(name)}</th><td class='num'>{_pct(g.get('eer'))}</td>"
                    f"<td class='num'>{g.get('n_spoof', '')}</td><td class='num'>{g.get('n_bonafide', '')}</td>"
                    f"<td>{_e(g.get('reason', ''))}</td></tr>")
    return "\n".join(rows)


def calibration_section(result: dict) -> str:
    """Return the calibration section: the map, actDCF and Cllr on calibrated and raw LLRs, minCllr."""
    cal, m = result["calibration"], result["metrics"]
    if "slope" in cal:
        how = (f"LLR = {cal['slope']:.4g} · score + {cal['offset']:.4g}, fitted on {cal['fitted_on']} "
               f"by {cal['method']}.")
    else:
        how = f"No calibration: {cal.get('reason', '')}."
    rows = [f"<tr><th>{_e(label)}</th><td class='num'>{_fmt(m[c]['value'])}</td>"
            f"<td class='num'>{_fmt(m[r]['value'])}</td></tr>"
            for label, c, r in (("actDCF", "act_dcf", "act_dcf_raw"), ("Cllr (bits)", "cllr", "cllr_raw"))]
    rows.append(f"<tr><th>minCllr (bits)</th><td class='num' colspan='2'>{_fmt(m['min_cllr']['value'])}</td></tr>")
    return (f"<h2>Calibration</h2><p>{_e(how)} The map is monotone: EER and minDCF do not change; actDCF and Cllr "
            f"measure how well the LLRs can be used as they are. minCllr is the Cllr a perfect calibration would "
            f"reach on these clips.</p>"
            + _table(["", "calibrated LLR", "raw score (uncalibrated)"], rows))


def subsets_section(result: dict) -> str:
    """Return the key-subset table (ASVspoof 2021), or "" when the clips carry no subset."""
    subsets = result.get("subsets") or {}
    if not subsets:
        return ""
    chosen = result["subset"]["name"]
    rows = [f"<tr><th>{_e(name)}{' (reported above)' if name == chosen else ''}</th>"
            f"<td class='num'>{t['counts']['bonafide']}</td><td class='num'>{t['counts']['spoof']}</td>"
            f"<td class='num'>{_pct(t['eer'])}</td><td class='num'>{_fmt(t['min_dcf'])}</td></tr>"
            for name, t in subsets.items()]
    return (f"<h2>Key subsets</h2><p>Every metric above covers the <b>{_e(chosen)}</b> subset of the key "
            f"(published ASVspoof 2021 results use eval); the score files hold every trial. "
            f"<code>--subset NAME</code> reports another one.</p>"
            + _table(["subset", "bona fide", "spoof", "EER %", "minDCF"], rows))


def shortcuts_section(audit: dict) -> str:
    """Return the shortcut-audit section: each cue's one-number EER beside the model's, with warnings."""
    if audit.get("model") is None:
        return f"<h2>Shortcut audit</h2><p>Not run: {_e(audit.get('reason', ''))}</p>"
    model = audit["model"]["rocch_eer"]
    rows = [f"<tr><th>model</th><td class='num'>{_pct(model)}</td><td colspan='4'>the detector's own score</td></tr>"]
    for column, c in audit["cues"].items():
        unit = f" ({c['unit']})" if c["unit"] else ""
        if c.get("eer") is None:
            rows.append(f"<tr><th>{_e(c['what'])}{_e(unit)}</th><td class='num'>n/a</td>"
                        f"<td colspan='4'>{_e(c.get('reason', ''))}</td></tr>")
            continue
        flag = f"<b class='warn'>{_e(c['warning'])}</b>" if c.get("warning") else ""
        rows.append(f"<tr{' class=warnrow' if flag else ''}><th>{_e(c['what'])}{_e(unit)}</th>"
                    f"<td class='num'>{_pct(c['eer'])}</td><td>{_e(c['direction'])}</td>"
                    f"<td class='num'>{_cue(c['bonafide_median'])}</td><td class='num'>{_cue(c['spoof_median'])}</td>"
                    f"<td>{flag}</td></tr>")
    return (f"<h2>Shortcut audit</h2><p>Could one trivial number per file do the model's job? Each cue, measured "
            f"from the files at conversion time, is used alone as a detector: {_e(audit['formula'])}. Flagged: EER at "
            f"most {100 * audit['strong_eer']:g} %, or within {100 * audit['margin']:g} points of the model.</p>"
            + _table(["cue", "EER %", "direction", "median bona fide", "median spoof", "warning"], rows))


def top_loss_cards(clips: list[TopLossClip], audio_seconds: float) -> str:
    """Return one card per clip: its spectrogram (and heat map, when explained) beside an audio player of the clip."""
    cards = []
    for c in clips:
        try:
            player = (f"<audio controls preload='auto' src='{wav_uri(c.audio, audio_seconds)}'></audio>"
                      f"<div class='small'>first {audio_seconds:g} s of {_e(c.audio)}, resampled to 16 kHz</div>"
                      if c.audio else "<div class='small'>original audio path unknown (no manifest row)</div>")
        except Exception as e:   # a moved or broken file must not sink the report: say why, keep going
            player = f"<div class='small'>original audio not playable: {_e(c.audio)}: {_e(e)}</div>"
        cards.append(
            f"<div class='card'><div class='maps'><img class='spec' alt='spectrogram of {_e(c.clip_id)}' "
            f"src='{png_uri(c.image)}'>{heatmap_img(c)}</div>"
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
.note{background:#fff8e1;border:1px solid #f0d98c;padding:.5em .8em} .warn{color:#a00}
.alert{background:#fdecea;border:1px solid #e0a39b;padding:.5em .8em} tr.warnrow td{background:#fdecea}
.maps{display:flex;flex-direction:column;gap:.3em;width:420px;max-width:55%} .maps img.spec{width:100%;max-width:100%}
img.heat{width:100%;border:1px solid #eee} .reading{font-size:1.05em;font-weight:600}
"""


def _groups_html(result: dict) -> str:
    parts = []
    if result["per_attack"]:
        parts.append("<h2>EER per attack (each spoofing system against all bona fide clips)</h2>"
                     + _table(["system", "EER %", "spoof clips", "bona fide clips", "note"],
                              [group_rows(result["per_attack"])]))
    else:
        parts.append("<h2>EER per attack</h2><p>no attack systems are recorded for the spoof clips of this split "
                     "(manifest.csv column system)</p>")
    for key, title in (("per_condition", "EER per condition (bona fide and spoof of the same condition)"),
                       ("per_family", "EER per attack family (each family's spoofs against all bona fide clips)")):
        if result.get(key):
            parts.append(f"<h2>{_e(title)}</h2>" + _table(["group", "EER %", "spoof clips", "bona fide clips",
                                                            "note"], [group_rows(result[key])]))
    return "\n".join(parts)


def render_report(title: str, summary: list[tuple[str, str]], result: dict, plots: dict[str, Path],
                  clips: list[TopLossClip], notes: list[str], audio_seconds: float = 4.0,
                  explanations: str = "") -> str:
    """Return the report page of an evaluation (metrics.json content `result`) as one HTML string, every image and
    audio clip embedded; `plots` maps captions to PNG files; `explanations` is explanation_section's HTML."""
    summary_html = "\n".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in summary)
    reliability = plots.get("reliability diagram")
    figures = "\n".join(f"<figure><img alt='{_e(name)}' src='{png_uri(p)}'><figcaption>{_e(name)}</figcaption></figure>"
                        for name, p in plots.items() if p is not None and Path(p).is_file() and p != reliability)
    notes_html = "".join(f"<p class='note'>{_e(n)}</p>" for n in notes)
    alerts = "".join(f"<p class='alert'>Shortcut: {_e(w)}</p>" for w in result["shortcuts"].get("warnings", []))
    ci = result.get("ci95", {})
    ci_text = (f"95 % intervals: {ci['method']}." + (f" Note: {ci['note']}." if ci.get("note") else "")
               if "method" in ci else f"No intervals: {ci.get('reason', 'not computed')}.")
    reliability_html = (f"<figure><img alt='reliability diagram' src='{png_uri(reliability)}'><figcaption>reliability "
                        f"diagram before and after calibration</figcaption></figure>" if reliability else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{_e(title)}</h1>
<table>{summary_html}</table>
{alerts}
{notes_html}
<h2>Threshold-free metrics</h2>
<p>{_e(ci_text)}</p>
<table><tr><th>metric</th><th>value</th><th>95 % interval</th><th>formula / source</th></tr>
{metric_rows(result["metrics"], ci)}
</table>
{calibration_section(result)}
{reliability_html}
<h2>Tuned threshold vs 0.5</h2>
<table><tr><th>metric</th><th>at tuned threshold</th><th>at spoof_prob 0.5</th><th>formula</th></tr>
{comparison_rows(result["at_tuned_threshold"], result["at_0.5"])}
</table>
{_groups_html(result)}
{subsets_section(result)}
{shortcuts_section(result["shortcuts"])}
<h2>Plots</h2>
<div class="plots">
{figures}
</div>
<h2>Top losses: listen to what the model got wrong</h2>
{top_loss_cards(clips, audio_seconds)}
{explanations}
</body></html>
"""


# ---------------------------------------------------------------- explanations (classify.explain)

def heatmap_img(c: TopLossClip) -> str:
    """Return the <img> of a clip's attribution heat map, or "" when it has none."""
    if c.heatmap is None or not Path(c.heatmap).is_file():
        return ""
    return f"<img class='heat' alt='attribution heat map of {_e(c.clip_id)}' src='{png_uri(c.heatmap)}'>"


def explanation_section(band_plot: Path | None, reading: str, details: list[str], confident: list[TopLossClip],
                        audio_seconds: float) -> str:
    """Return the report's explanation section: the per-band plot with its one-line reading and how it was made,
    then the most confident correct clips of each class with their heat maps and audio players."""
    plot = (f"<figure><img alt='attribution per frequency band' src='{png_uri(band_plot)}'>"
            f"<figcaption>mean share of the attribution per band, by decision</figcaption></figure>"
            if band_plot is not None and Path(band_plot).is_file() else "")
    items = "".join(f"<li>{_e(d)}</li>" for d in details)
    return (f"<h2>Where the model finds its evidence</h2>\n<p class='reading'>{_e(reading)}</p>\n{plot}\n"
            f"<ul class='small'>{items}</ul>\n"
            f"<h2>Most confident correct clips of each class, with their heat maps</h2>\n"
            f"{top_loss_cards(confident, audio_seconds)}")
