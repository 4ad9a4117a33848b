"""App start-up, first analysis and peak memory, as a user meets them: `python app.py` in a fresh process.

    python -m benchmarks.app_startup [--model shapes] [--r50]

Starts the app on 127.0.0.1, and reports: seconds until the page answers, seconds until the first
upload is analysed (while the backbone may still be compiling in the background), when the log says
the compiled backbone is in place, the time of an analysis after that, and the process's peak RSS.
--r50 serves a DETR-R50 with random weights (the official layout, saved to a temporary checkpoint)
on an 800x1066 image, which is what the memory target is about. The app is always stopped at the end.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from webapp.served import app_process

ROOT = Path(__file__).resolve().parent.parent


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _analyse(client, image: str, model: str) -> float:
    from gradio_client import handle_file
    start = time.perf_counter()
    client.predict(handle_file(image), model, api_name="/analyze")
    return time.perf_counter() - start


def _r50_checkpoint(folder: Path) -> str:
    import torch

    import detr_core
    torch.manual_seed(0)
    path = folder / "detr-r50-random.pth"
    detr_core.save_model(detr_core.build_model(detr_core.DETRConfig()), path)
    return str(path)


def _r50_image(folder: Path) -> str:
    from PIL import Image
    path = folder / "street-size.jpg"
    Image.open(ROOT / "webapp" / "examples" / "grace_hopper.jpg").convert("RGB").resize((1066, 800)).save(path)
    return str(path)


def _compiled_at(log: Path, timeout: float) -> float | None:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        text = log.read_text()
        if "compiled the backbone" in text or "could not compile" in text:
            return time.perf_counter() - start
        time.sleep(0.2)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--r50", action="store_true", help="serve a random-weight DETR-R50 instead")
    parser.add_argument("--extra", nargs="*", default=[], help="more app flags, e.g. --no-compile")
    args = parser.parse_args()
    from gradio_client import Client
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = _r50_checkpoint(folder) if args.r50 else args.model
        image = _r50_image(folder) if args.r50 else str(ROOT / "webapp" / "examples" / "shapes.jpg")
        log = folder / "app.log"
        started = time.perf_counter()
        with app_process(["--model", model, *args.extra], log, timeout=120) as app:
            page = time.perf_counter() - started
            client = Client(app.url, verbose=False)
            first = _analyse(client, image, model)
            first_at = time.perf_counter() - started  # read now: the wait for the compile below can be minutes
            compiled = _compiled_at(log, 300)
            compiled_by = time.perf_counter() - started
            later = min(_analyse(client, image, model) for _ in range(3))
            print(f"model {model}: page answered {page:.1f} s after start; first analysis {first:.2f} s "
                  f"(at {first_at:.1f} s); backbone compiled "
                  f"{'never' if compiled is None else f'by {compiled_by:.0f} s'}; "
                  f"analysis afterwards {later:.2f} s (best of 3); peak RSS {_peak_rss_mb(app.process.pid):.0f} MB")
            for line in log.read_text().splitlines():
                if "compile" in line:
                    print("  log:", line)


if __name__ == "__main__":
    main()
