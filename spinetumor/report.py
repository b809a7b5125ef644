"""The clinical report of a pipeline run: ``report.json``, ``report.csv`` and ``report.html``.

The report dictionary (schema in ``docs/report.md``) is built by :mod:`spinetumor.pipeline`;
this module only writes it. The HTML page is self-contained (pictures embedded), so it can
be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import csv
import html
import io as _io
from pathlib import Path

from .io import write_json, write_text

#: Columns of report.csv, one row per tumor.
CSV_COLUMNS = ("id", "type", "probability", "rule_type", "types_agree", "levels", "disc_levels",
               "epicenter_level", "volume_ml", "extent_si_mm", "extent_ap_mm", "extent_lr_mm",
               "centroid_r", "centroid_a", "centroid_s", "canal_compromise_percent", "cautions")


def _join(values) -> str:
    return ", ".join(values) if values else "none"


def level_span(levels) -> str:
    """'L2' for one level, 'L2–L3' for a contiguous span, else the comma-joined list."""
    if not levels:
        return "no labeled level"
    return levels[0] if len(levels) == 1 else f"{levels[0]}–{levels[-1]}"


def finding_sentence(tumor: dict) -> str:
    """One plain-language sentence per tumor, as a radiologist would dictate it."""
    probability = tumor["type_probabilities"].get(tumor["type"], float("nan"))
    agree = "" if tumor.get("types_agree", True) else (
        f"; the geometric rule says {tumor['rule_type']} — please review")
    extent = tumor["extent_mm"]
    discs = f", involving the {_join(tumor['disc_levels'])} disc space" if tumor["disc_levels"] else ""
    return (f"Tumor {tumor['id']}: {tumor['type']} lesion (CNN probability {probability:.2f}{agree}) at "
            f"{level_span(tumor['levels'])}{discs}, epicentre {tumor['epicenter_level'] or 'unlabeled'}, "
            f"{tumor['volume_ml']:.2f} mL, {extent['superior_inferior']:.0f} × {extent['anterior_posterior']:.0f} × "
            f"{extent['left_right']:.0f} mm (SI × AP × LR), occupying {tumor['canal_compromise_percent']:.0f}% "
            f"of the canal cross-section at its worst level."
            + "".join(f" Caution: {caution}." for caution in tumor.get("cautions", [])))


def csv_rows(report: dict) -> list[dict]:
    """report.csv rows: one per tumor, flat columns."""
    rows = []
    for t in report["tumors"]:
        extent, centroid = t["extent_mm"], t["centroid_ras"]
        rows.append({
            "id": t["id"], "type": t["type"], "probability": round(t["type_probabilities"][t["type"]], 4),
            "rule_type": t.get("rule_type", ""), "types_agree": t.get("types_agree", ""),
            "levels": " ".join(t["levels"]), "disc_levels": " ".join(t["disc_levels"]),
            "epicenter_level": t["epicenter_level"] or "", "volume_ml": round(t["volume_ml"], 3),
            "extent_si_mm": round(extent["superior_inferior"], 1), "extent_ap_mm": round(extent["anterior_posterior"], 1),
            "extent_lr_mm": round(extent["left_right"], 1), "centroid_r": round(centroid[0], 1),
            "centroid_a": round(centroid[1], 1), "centroid_s": round(centroid[2], 1),
            "canal_compromise_percent": round(t["canal_compromise_percent"], 1),
            "cautions": "; ".join(t.get("cautions", [])),
        })
    return rows


def write_csv(report: dict, path) -> Path:
    """Write report.csv (one row per tumor; a header only when there is none)."""
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    return write_text(buffer.getvalue(), path)


def _image_tag(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(headers, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict, figures=()) -> str:
    """The report page: findings, tumor table, vertebrae, pictures, models, timings and notes."""
    tumors = report["tumors"]
    findings = "".join(f"<li>{html.escape(finding_sentence(t))}</li>" for t in tumors) or \
        "<li>No tumor was found.</li>"
    tumor_rows = [[r[c] for c in CSV_COLUMNS] for r in csv_rows(report)]
    vertebra_rows = [[v["level"], "yes" if v["present"] else "no",
                      f"{v['volume_ml']:.1f}" if v["present"] else "",
                      ", ".join(f"{c:.1f}" for c in v["centroid_ras"]) if v["present"] else "",
                      f"{v['confidence']:.2f}" if v["present"] and v.get("confidence") is not None else ""]
                     for v in report["vertebrae"]]
    timing_rows = [[stage, f"{seconds:.2f}"] for stage, seconds in report["timings_s"].items()]
    model_rows = [[name, m.get("version", ""), m.get("sha256", "")[:12]] for name, m in report["models"].items()]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.get("notes", []))
    pictures = "".join(_image_tag(path, caption) for caption, path in figures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SpineTumor report: {html.escape(report['input']['name'])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #bbb; padding: 3px 7px; text-align: left; }}
th {{ background: #eef; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
img {{ max-width: 560px; border: 1px solid #ccc; }}
.warning {{ color: #a00; }}
</style></head><body>
<h1>SpineTumor report</h1>
<p>Input: <b>{html.escape(report['input']['name'])}</b> ({html.escape(report['input']['size'])} voxels,
{html.escape(report['input']['spacing'])} mm). SpineTumor {html.escape(report['spinetumor_version'])},
{html.escape(report['created'])}.</p>
<p class="warning">Research software, not a medical device: every finding needs a radiologist's review.</p>
<h2>Findings</h2><ul>{findings}</ul>
{('<h2>Notes</h2><ul>' + notes + '</ul>') if notes else ''}
<h2>Tumors</h2>{_table(CSV_COLUMNS, tumor_rows) if tumor_rows else '<p>None.</p>'}
<h2>Vertebral levels</h2>{_table(['level', 'present', 'volume (mL)', 'centroid RAS (mm)', 'confidence'], vertebra_rows)}
<h2>Pictures</h2>{pictures or '<p>None.</p>'}
<h2>Models</h2>{_table(['model', 'version', 'sha256'], model_rows)}
<h2>Time per stage (s)</h2>{_table(['stage', 'seconds'], timing_rows)}
</body></html>
"""


def write_reports(report: dict, out_dir, figures=()) -> list[Path]:
    """Write report.json, report.csv and report.html into ``out_dir``; ``figures`` = (caption, png path)."""
    out_dir = Path(out_dir)
    return [write_json(report, out_dir / "report.json"), write_csv(report, out_dir / "report.csv"),
            write_text(render_html(report, figures), out_dir / "report.html")]
