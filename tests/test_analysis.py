"""`python -m analysis`: one process and two torchrun processes write the same summary.json; a killed run
resumes where it stopped; a resume with other settings is refused."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import shapes_set

import detr_core

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "DETR_LENS_COMPILE": "0"}
ARGS = ["--steps", "3", "--random-seeds", "1", "--max-detections", "1", "--score-threshold", "0.0",
        "--batch-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    data = shapes_set(root / "data", images=3, seed=3, size=64)
    torch.manual_seed(0)
    model = detr_core.build_model(detr_core.tiny_config(), detr_core.PreprocessConfig(64, 96)).eval()
    detr_core.save_model(model, root / "tiny.pth")
    return root, data, root / "tiny.pth"


def _command(model, data, out, procs: int = 1, extra=()):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
                if procs > 1 else [sys.executable])
    return launcher + ["-m", "analysis", "--model", str(model), "--data", str(data), "--out", str(out),
                       *ARGS, *extra]


def _run(cmd):
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def one_process(setup):
    root, data, model = setup
    _run(_command(model, data, root / "one"))
    return root / "one"


def test_one_and_two_processes_give_the_same_summary(setup, one_process):
    root, data, model = setup
    _run(_command(model, data, root / "two", procs=2))
    one = json.loads((one_process / "summary.json").read_text())
    two = json.loads((root / "two" / "summary.json").read_text())
    assert one == two
    assert one["images"] == 3 and set(one) == {"model", "images", "faithfulness", "slots", "heads"}
    attention = one["faithfulness"]["attention"]
    assert attention["n"] == 3 and 0 <= attention["deletion_auc"] <= 1 and 0 <= attention["insertion_auc"] <= 1
    assert {"random", "box", "centre", "rollout", "relevance"} <= set(one["faithfulness"])
    shards = {p.name: len(p.read_text().splitlines()) for p in (root / "two" / "shards").iterdir()}
    assert shards == {"rank-0.jsonl": 2, "rank-1.jsonl": 1}  # images 0, 2 and 1
    for name in ("faithfulness.png", "slots.png", "heads.png", "report.md"):
        assert (root / "two" / name).stat().st_size > 0
    assert "| attention |" in (root / "two" / "report.md").read_text()


def test_a_killed_run_resumes_where_it_stopped(setup, one_process):
    root, data, model = setup
    out = root / "killed"
    proc = subprocess.Popen(_command(model, data, out), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    shard = out / "shards" / "rank-0.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (shard.exists() and shard.read_text().count("\n") >= 1):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = shard.read_text().count("\n")
    assert 1 <= done_before < 3, "the run finished before it could be killed"
    with open(shard, "a") as f:
        f.write('{"index": 2, "fil')  # a line torn by the kill
    result = _run(_command(model, data, out))
    lines = [json.loads(line) for line in shard.read_text().splitlines()]
    assert sorted(r["index"] for r in lines) == [0, 1, 2]  # each image once, the torn line gone
    assert json.loads((out / "summary.json").read_text()) == json.loads((one_process / "summary.json").read_text())
    assert result.returncode == 0


def test_a_resume_with_other_settings_is_refused(setup, one_process):
    root, data, model = setup
    proc = subprocess.run(_command(model, data, one_process, extra=["--limit", "2"]), cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=200)
    assert proc.returncode == 2 and "other settings (limit)" in proc.stderr


def test_the_summary_averages_per_detection_with_a_t_interval_in_method_order():
    from analysis.faithfulness_stats import summarise

    per_image = [[{"auc": {"random": [0.5, 0.4], "layer 2": [0.2, 0.8], "attention": [0.1, 0.9]}}],
                 [{"auc": {"random": [0.7, 0.2], "layer 2": [0.2, 0.6], "attention": [0.3, 0.7]},
                   "pointing": {"attention": True, "random": False}}], []]
    s = summarise(per_image)
    assert list(s) == ["attention", "layer 2", "random"]
    # mean 0.2, sd 0.1414, t(0.975, 1) = 12.706: half-width 12.706 * 0.1414 / sqrt(2) = 1.2706
    assert s["attention"]["deletion_auc"] == pytest.approx(0.2)
    assert s["attention"]["deletion_auc_ci95"] == pytest.approx([0.2 - 1.27062, 0.2 + 1.27062], abs=1e-4)
    assert s["layer 2"]["deletion_auc_ci95"] == pytest.approx([0.2, 0.2])  # no spread
    assert s["attention"]["n"] == 2 and s["attention"]["pointing"] == 1.0 and s["attention"]["pointing_n"] == 1
    assert "pointing" not in s["layer 2"]
