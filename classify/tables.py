"""The text of an evaluation: the summary lines at the top of the report and the tables printed on the terminal."""
from __future__ import annotations

from .shortcuts import summary_line


def _f(v, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def report_summary(result: dict) -> list[tuple[str, str]]:
    """Return the (label, text) lines at the top of the report."""
    t = result["threshold"]
    val_value = t.get("val", {}).get("value")
    subset = result.get("subset", {})
    lines = [("run", result["run"]), ("architecture", str(result["arch"])),
             ("evaluated split", f"{result['split']} of {result['images']}: {result['counts'][result['split']]}")]
    if subset.get("available"):
        lines.append(("key subset", f"{subset['name']}: {subset['selected']} of {subset['trials']} trials "
                                    f"(subsets: {', '.join(subset['available'])})"))
    lines += [("threshold", f"spoof when spoof_prob >= {t['spoof_prob_threshold']:.6g} "
                            f"(score < {t['score_threshold']:.4g}), rule {t['rule']} on val "
                            f"({result['val_images']}: {result['counts']['val']})"
                            + (f", {t['val'].get('metric')} = {val_value:.4f}" if val_value is not None else "")),
              ("score", result["score"]),
              ("LLR", f"{result['llr']['formula']}; training prior {result['llr']['prior_bonafide']:.4g}: "
                      f"{result['llr']['why']}"),
              ("shortcut audit", summary_line(result["shortcuts"]))]
    return lines


def format_table(result: dict) -> str:
    """Return the printed summary: threshold-free metrics with intervals, tuned vs 0.5 decisions, audit line."""
    subset = result.get("subset", {})
    where = f"{result['split']}" + (f", subset {subset['name']}" if subset.get("available") else "")
    lines = [f"{result['run']}  ({where}: {result['counts'][result['split']]})",
             f"{'metric':<20} {'value':>10}  {'95 % interval':<19} formula"]
    ci = result.get("ci95", {})
    for k, m in result["metrics"].items():
        span = f"[{ci[k][0]:.4f}, {ci[k][1]:.4f}]" if ci.get(k) else ""
        text = m["formula"] if m["value"] is not None else m["reason"]
        lines.append(f"{k:<20} {_f(m['value']):>10}  {span:<19} {text[:80]}")
    if "unit" in ci:
        lines.append(f"intervals: {ci['resamples']} bootstrap replicates over {ci['units']} {ci['unit']}s"
                     + (f" ({ci['note']})" if ci.get("note") else ""))
    t = result["threshold"]["spoof_prob_threshold"]
    lines.append(f"{'decision metric':<20} {'tuned ' + format(t, '.4g'):>12} {'at 0.5':>10}")
    for k, m in result["at_tuned_threshold"].items():
        if isinstance(m, dict) and "formula" in m and k != "threshold":
            lines.append(f"{k:<20} {_f(m['value']):>12} {_f(result['at_0.5'][k]['value']):>10}")
    c = result["at_tuned_threshold"]["confusion"]
    lines.append(f"confusion at tuned threshold (spoof positive): "
                 f"TP {c['tp']}  FP {c['fp']}  FN {c['fn']}  TN {c['tn']}")
    for name, s in (result.get("subsets") or {}).items():
        lines.append(f"subset {name:<13} EER {_f(s['eer'])}  minDCF {_f(s['min_dcf'])}  {s['counts']}")
    lines.append(summary_line(result["shortcuts"]))
    return "\n".join(lines)


def format_aggregate(doc: dict) -> str:
    """Return the printed aggregate: mean ± std per metric."""
    lines = [f"aggregate over {len(doc['runs'])} runs ({doc['split']}): mean ± std"]
    for k, m in doc["metrics"].items():
        if m["mean"] is not None:
            std = f" ± {m['std']:.4f}" if m["std"] is not None else ""
            lines.append(f"  {k:<26} {m['mean']:.4f}{std}  (n={m['n']})")
    return "\n".join(lines)
