"""``python -m analysis`` / ``detr-lens-analyze``: data-set analyses of a DETR or DETR-family model.

    python -m analysis --model shapes --data DIR --out OUT --analyses faithfulness,slots,heads
    torchrun --nproc_per_node 4 -m analysis --model M --data D --out OUT    # sharded; the same summary.json

Each process takes every N-th image and appends its per-image results to OUT/shards/rank-<r>.jsonl; a killed
run started again with the same arguments skips the images already recorded. Rank 0 shows progress and, when
every rank is done, writes OUT/summary.json, the figures (PNG) and OUT/report.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from .data import ImageSet
from .faithfulness_stats import FaithfulnessSettings
from .report import write_report
from .run import analyse_images

ANALYSES = ("faithfulness", "slots", "heads")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="what detr_core.open_any takes: shapes, a zoo name, a path, a Hub id")
    p.add_argument("--data", required=True, type=Path,
                   help="a COCO folder (annotations.json + images/), an annotation file (with --images), "
                        "or a folder of images")
    p.add_argument("--images", type=Path, help="image folder when --data is an annotation file")
    p.add_argument("--out", required=True, type=Path, help="output folder (shards, summary.json, figures, report.md)")
    p.add_argument("--analyses", default=",".join(ANALYSES), help=f"comma-separated, of {', '.join(ANALYSES)}")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--score-threshold", type=float, default=0.7, help="detections analysed (default 0.7)")
    p.add_argument("--steps", type=int, default=FaithfulnessSettings.steps, help="deletion/insertion steps")
    p.add_argument("--baseline", default=FaithfulnessSettings.baseline, choices=("blur", "mean"))
    p.add_argument("--batch-size", type=int, default=FaithfulnessSettings.batch_size)
    p.add_argument("--random-seeds", type=int, default=FaithfulnessSettings.random_seeds)
    p.add_argument("--drise-masks", type=int, default=FaithfulnessSettings.drise_masks,
                   help="masks of the D-RISE reference map per detection (0: none; one forward each)")
    p.add_argument("--max-detections", type=int, default=FaithfulnessSettings.max_detections,
                   help="confident detections tested per image, best first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def chosen_analyses(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in ANALYSES]
    if unknown or not names:
        raise ValueError(f"--analyses {text!r}: unknown {unknown}; use a comma-separated list of {ANALYSES}")
    return names


def run_settings(args: argparse.Namespace, analyses: tuple[str, ...]) -> dict:
    """What fixes the results: a resumed run must have the same."""
    faith = FaithfulnessSettings(args.steps, args.baseline, args.batch_size, args.random_seeds, args.drise_masks,
                                 args.max_detections)
    return {"model": str(args.model), "data": str(args.data), "images": str(args.images or ""),
            "analyses": list(analyses), "limit": args.limit, "score_threshold": args.score_threshold,
            "faithfulness": asdict(faith)}


def check_resume(out: Path, settings: dict) -> None:
    """OUT/run.json records the settings; a resume with other settings would mix two experiments."""
    path = out / "run.json"
    if path.exists():
        before = json.loads(path.read_text())
        if before != settings:
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise ValueError(f"{out} holds a run with other settings ({', '.join(changed)}); use another --out "
                             "or the same arguments to resume it")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    from train.distributed import barrier, cleanup, init_distributed

    args = parse_args(argv)
    info = init_distributed(args.device)
    try:
        analyses = chosen_analyses(args.analyses)
        settings = run_settings(args, analyses)
        images = ImageSet.open(args.data, args.images)
        if info.is_main:
            check_resume(args.out, settings)
        barrier(info)
        import detr_core

        model = detr_core.open_any(args.model, device=str(info.device))
        analyse_images(model, images, args.out, settings, info, progress=info.is_main and not args.no_progress)
        barrier(info)
        if info.is_main:
            summary = write_report(args.out, settings, len(images.files[:args.limit]))
            print(f"wrote {args.out / 'summary.json'} and {args.out / 'report.md'} "
                  f"({summary['images']} images)", flush=True)
        return 0
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        cleanup(info)
