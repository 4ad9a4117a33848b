"""Two CPU processes under torchrun (gloo): they train together and only rank 0 writes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from train_helpers import shapes_set

REPO = Path(__file__).resolve().parents[1]


def test_two_process_torchrun_run(tmp_path):
    data = shapes_set(tmp_path / "data", images=4, seed=4, size=64)
    val = shapes_set(tmp_path / "val", images=3, seed=5, size=64)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "train", "--data", str(data), "--val-data", str(val), "--output", str(out),
           "--config", "tiny", "--batch-size", "1", "--epochs", "2", "--max-steps", "3",
           "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 4 images over 2 processes at batch 1: 2 steps per epoch; step 3 stops inside epoch 1
    lines = [e for e in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "kind" not in e]
    assert [(e["epoch"], e["partial"], e["step"]) for e in lines] == [(0, False, 2), (1, True, 3)]
    assert all(0.0 <= e["val"]["AP"] <= 1.0 for e in lines)
    assert proc.stdout.count("done: epoch") == 1  # rank 1 prints nothing
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["progress"]["step"] == 3
    assert not any(k.startswith("module.") for k in ckpt["model"])  # saved unwrapped from DDP
    assert sorted(p.name for p in out.iterdir()) == ["best.pth", "last.pth", "log.jsonl"]
