"""Rank 0, once every shard is written: OUT/summary.json, the figures and OUT/report.md."""
from __future__ import annotations

import json
from pathlib import Path

from . import faithfulness_stats, head_stats, slot_stats
from .shards import ordered, read_records


def summarise(out: Path, settings: dict, expected: int) -> dict:
    """Every analysis's aggregate numbers, from the records in image order (independent of the ranks)."""
    records = list(ordered(read_records(out)))
    if len(records) != expected:
        raise RuntimeError(f"{out}/shards holds {len(records)} of {expected} images: a rank stopped early; run "
                           "the same command again to finish")
    summary: dict = {"model": settings["model"], "images": len(records)}
    if "faithfulness" in settings["analyses"]:
        summary["faithfulness"] = faithfulness_stats.summarise([r["faithfulness"] for r in records])
    if "slots" in settings["analyses"]:
        summary["slots"] = slot_stats.summarise([r["slots"] for r in records], settings["score_threshold"])
    if "heads" in settings["analyses"]:
        summary["heads"] = head_stats.summarise([r["heads"] for r in records])
    return summary


def write_report(out: Path, settings: dict, expected: int) -> dict:
    summary = summarise(out, settings, expected)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    figures = {}
    if summary.get("faithfulness"):
        figures["Faithfulness: deletion and insertion AUC per method"] = faithfulness_stats.figure(
            summary["faithfulness"], out / "faithfulness.png")
    if "slots" in summary:
        records = [r["slots"] for r in ordered(read_records(out))]
        figures["Query slots (Fig. 7 of the DETR paper)"] = slot_stats.figure(records, out / "slots.png")
    if summary.get("heads"):
        path = head_stats.figure(summary["heads"], out / "heads.png")
        if path is not None:
            figures["Attention heads: mean distance (px) and entropy per layer and head"] = path
    (out / "report.md").write_text(markdown(summary, settings, figures))
    return summary


def faithfulness_table(faith: dict) -> list[str]:
    """The Markdown table: method, deletion AUC, insertion AUC (95% intervals), n, pointing game."""
    lines = ["| method | deletion AUC ↓ (95% CI) | insertion AUC ↑ (95% CI) | n | pointing game |",
             "|---|---|---|---|---|"]
    for name, s in faith.items():
        lo_d, hi_d = s["deletion_auc_ci95"]
        lo_i, hi_i = s["insertion_auc_ci95"]
        pointing = f"{s['pointing']:.2f} of {s['pointing_n']}" if "pointing" in s else "–"
        lines.append(f"| {name} | {s['deletion_auc']:.3f} ({lo_d:.3f}–{hi_d:.3f}) | {s['insertion_auc']:.3f} "
                     f"({lo_i:.3f}–{hi_i:.3f}) | {s['n']} | {pointing} |")
    return lines


def markdown(summary: dict, settings: dict, figures: dict) -> str:
    f = settings["faithfulness"]
    lines = [f"# Analysis of {summary['model']}", "",
             f"{summary['images']} images of `{settings['data']}`; detections above {settings['score_threshold']}.",
             ""]
    if summary.get("faithfulness"):
        lines += ["## Faithfulness", "",
                  f"Deletion and insertion, {f['steps']} steps, baseline {f['baseline']}, the detection followed "
                  "by D-RISE similarity; random = mean over "
                  f"{f['random_seeds']} seeds. Perturbed images leave the data distribution: the test says what "
                  "the model reacts to, not what it would use on natural images.", ""]
        lines += faithfulness_table(summary["faithfulness"]) + [""]
    for title, path in figures.items():
        lines += [f"### {title}", "", f"![{title}]({Path(path).name})", ""]
    return "\n".join(lines)
