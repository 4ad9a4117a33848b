"""What the Compare view holds at DETR-R50 size, as the store counts it and as the process grows.

    python -m benchmarks.compare_memory [--image webapp/examples/grace_hopper.jpg]

Two randomly initialised DETR-R50s (the official layout; two seeds, as a model before and after fine-tuning) on
an 800x1066 input. Model A's analysis goes into the store as an upload's does (`Session.start`), model B's
through the Compare view's own path (`webapp.comparison.second_inspection`, from a checkpoint file). For each
step: the bytes the store counts against `--memory-budget-mb`, and the growth of the process's resident size
since a first, discarded forward pass (so its one-time costs are not counted), after garbage collection and
malloc_trim (so the forward passes' freed working memory is not counted either). Then the
same page with a budget one byte short of both: A is set aside when B comes in, and B is kept.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import tempfile
from pathlib import Path

import torch

import detr_core
from webapp.comparison import second_inspection
from webapp.models import ModelCache
from webapp.session import Session, prepare_image
from webapp.store import MB, InspectionStore

SIZE = (1066, 800)  # (W, H): R50's usual input


def rss_mb() -> float:
    """This process's resident size now, after a collection and a trim of malloc's free memory."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed blocks otherwise (see webapp/store.py's _trim)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def r50(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return detr_core.build_model(detr_core.DETRConfig()).eval()


def run(image_path: str, folder: Path) -> list[tuple[str, float, float]]:
    """-> rows (step, MB counted by the store, MB the process grew by since before A's analysis)."""
    image = prepare_image(image_path)[0].resize(SIZE)
    model_a = r50(0)
    detr_core.save_model(r50(1), folder / "b.pth")
    models = ModelCache(optimize=False)
    models.get(str(folder / "b.pth"))  # loaded before measuring: a model is not part of the page's budget
    store = InspectionStore(budget_bytes=4096 * MB)
    detr_core.inspect_image(model_a, image)  # the process's one-time costs of a first forward (oneDNN, allocator)
    base = rss_mb()
    session = Session.start(store, models, detr_core.inspect_image(model_a, image), "A", key="page")
    rows = [("A's analysis (as an upload's)", store.used_bytes / MB, rss_mb() - base)]
    second_inspection(session, str(folder / "b.pth"))
    rows.append(("+ B's (the Compare view)", store.used_bytes / MB, rss_mb() - base))
    budget = store.used_bytes - 1
    tight = InspectionStore(budget_bytes=budget)
    session = Session.start(tight, models, store.get("page"), "A", key="page")
    second_inspection(session, str(folder / "b.pth"))
    kept = "A kept" if "page" in tight else "A set aside"
    rows.append((f"budget {budget / MB:.1f} MB (1 byte short): {kept}, B kept: {len(tight) > 1}",
                 tight.used_bytes / MB, float("nan")))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(Path(__file__).resolve().parents[1] / "webapp/examples/grace_hopper.jpg"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        rows = run(args.image, Path(folder))
    print("| step | counted by the store (MB) | process grew by (MB) |\n|---|---:|---:|")
    for step, counted, grown in rows:
        print(f"| {step} | {counted:.1f} | {'' if grown != grown else f'{grown:.1f}'} |")


if __name__ == "__main__":
    main()
