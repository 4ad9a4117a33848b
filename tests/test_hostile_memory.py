"""The hostile folders of issue 25 are refused within seconds without growing the process by more than a few hundred
MB. Measured with resource.getrusage (ru_maxrss, the peak resident size) in a fresh subprocess, so that the rest of
the suite's peak cannot hide a growth: the script writes the folders from tiny models, opens a good DETR and a good
RT-DETR once (so that the libraries' lazy imports are in the baseline), then tries every hostile folder."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("timm")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
MAX_GROWTH_MB = 300
MAX_SECONDS = 10.0

SCRIPT = textwrap.dedent('''
    import gc, json, resource, shutil, sys, time
    from pathlib import Path

    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    import torch
    import detr_core
    from family_models import build_tiny
    from hf_models import build

    torch.set_num_threads(1)
    tmp = Path(sys.argv[1])
    build("detr", backbone="resnet18").save_pretrained(tmp / "detr")
    fm = build_tiny("rt_detr")
    fm.model.save_pretrained(tmp / "rt")
    fm.processor.save_pretrained(tmp / "rt")
    del fm
    detr_core.open_any(tmp / "detr"), detr_core.open_any(tmp / "rt")
    gc.collect()

    def peak_mb():  # the high-water mark since reset_peak() (VmHWM), else since the start (getrusage)
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        hwm = int(fields["VmHWM"].split()[0]) / 1024 if "VmHWM" in fields else 0
        return hwm or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def reset_peak():  # Linux: "5" resets VmHWM, so the peak of building the good models is not counted
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def resident_mb():  # now, not the peak: a peak reached while building the good models must not hide growth
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        return int(fields["VmRSS"].split()[0]) / 1024

    def hostile(name, good, file="config.json", text=None, **changes):
        folder = tmp / name
        shutil.copytree(tmp / good, folder)
        data = json.loads((folder / file).read_text()) if (folder / file).exists() else {}
        data.update(changes)
        (folder / file).write_text(text if text is not None else json.dumps(data))
        return folder

    cases = [
        hostile("detr-d_model", "detr", d_model=16384),
        hostile("detr-queries", "detr", num_queries=30_000_000),
        hostile("detr-layers", "detr", decoder_layers=100_000),
        hostile("detr-unfit", "detr", num_queries=5000, d_model=1024),
        hostile("detr-list", "detr", text="[1, 2]"),
        hostile("detr-edge", "detr", "preprocessor_config.json", size={"shortest_edge": 10**6, "longest_edge": 10**6}),
        hostile("detr-std", "detr", "preprocessor_config.json", image_std=0),
        hostile("rt-layers", "rt", decoder_layers=100_000),
        hostile("rt-queries", "rt", num_queries=100_000_000),
        hostile("rt-wide", "rt", d_model=4096, decoder_layers=200),
        hostile("rt-unfit", "rt", decoder_layers=6, decoder_ffn_dim=8192),
        hostile("rt-list", "rt", text="[]"),
        hostile("rt-std", "rt", "preprocessor_config.json", do_normalize=True, image_std=[0, 0, 0]),
    ]
    reset_peak()
    base, results = resident_mb(), {}
    for folder in cases:
        start = time.perf_counter()
        try:
            detr_core.open_any(folder)
            outcome = "LOADED"
        except ValueError as err:
            outcome = str(err)
        results[folder.name] = [time.perf_counter() - start, outcome]
    print(json.dumps({"base_mb": base, "peak_mb": peak_mb(), "results": results}))
''')


def test_hostile_folders_are_refused_within_seconds_and_a_few_hundred_mb(tmp_path):
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(TESTS), str(ROOT)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    growth = report["peak_mb"] - report["base_mb"]
    for name, (seconds, outcome) in report["results"].items():
        assert outcome != "LOADED", f"{name} was opened"
        assert seconds < MAX_SECONDS, f"{name} took {seconds:.1f} s to be refused: {outcome}"
    assert growth < MAX_GROWTH_MB, f"the refusals grew the process by {growth:.0f} MB: {report}"
    expected = {"detr-d_model": "d_model=16384 is beyond", "detr-queries": "num_queries=30000000 is beyond",
                "detr-layers": "decoder_layers=100000 is beyond", "detr-unfit": "does not fit",
                "detr-list": "holds a JSON list", "detr-edge": "size.shortest_edge=1000000",
                "detr-std": "std must be positive",
                "rt-layers": "decoder_layers=100000 is beyond", "rt-queries": "num_queries=100000000 is beyond",
                "rt-wide": "parameters, beyond any real DETR", "rt-unfit": "but the weights file holds only",
                "rt-list": "holds a JSON list", "rt-std": "std must be positive"}
    for name, words in expected.items():
        assert words in report["results"][name][1], (name, report["results"][name])
