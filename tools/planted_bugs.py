"""The five realistic bugs an audit planted that the tests once missed: each must fail its own module's tests.

    python tools/planted_bugs.py          # every bug; exit code 1 if any goes unnoticed

Each bug is planted alone in a scratch copy of the working tree (the repository is never touched), then
the test file of the module it breaks runs; the script prints the failing tests per bug.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mutation import REPO, scratch_copy


@dataclass(frozen=True)
class PlantedBug:
    name: str
    file: str
    before: str  # must occur exactly once in file
    after: str
    tests: str  # the module's own test file


BUGS = (
    PlantedBug("Inspection: softmax over the query axis instead of the class axis",
               "detr_core/inspection/inspection.py",
               "e = np.exp(x - x.max(-1, keepdims=True))\n    return e / e.sum(-1, keepdims=True)",
               "e = np.exp(x - x.max(0, keepdims=True))\n    return e / e.sum(0, keepdims=True)",
               "tests/test_inspect.py"),
    PlantedBug("train.evaluate: height and width swapped when boxes are scaled to pixels",
               "train/evaluate.py", 'outputs["pred_boxes"][b], (h, w))', 'outputs["pred_boxes"][b], (w, h))',
               "tests/test_train_evaluate.py"),
    PlantedBug("attention_in_box: the last layer's box at every layer",
               "detr_core/inspection/inspection.py", "self.layer_boxes[layer][query]", "self.layer_boxes[-1][query]",
               "tests/test_inspect.py"),
    PlantedBug("load_model: the module. prefix of a multi-process checkpoint no longer stripped",
               "detr_core/weights/loading.py",
               'if state and all(k.startswith("module.") for k in state):',
               'if False and state and all(k.startswith("module.") for k in state):',
               "tests/test_weights.py"),
    PlantedBug("encoder view: the two directions swapped",
               "webapp/controls.py",
               "        return False\n    if direction == LOOKED_AT:\n        return True",
               "        return True\n    if direction == LOOKED_AT:\n        return False",
               "tests/test_app_handlers.py"),
)


def plant(copy: Path, bug: PlantedBug) -> None:
    path = copy / bug.file
    text = path.read_text()
    if text.count(bug.before) != 1:
        raise RuntimeError(f"{bug.file}: the code to break ({bug.before!r}) is not there exactly once; "
                           "update the planted bug to the current code")
    path.write_text(text.replace(bug.before, bug.after))


def failing_tests(copy: Path, tests: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", tests],
                         cwd=copy, env=env, capture_output=True, text=True).stdout
    return re.findall(r"^FAILED (\S+)", out, flags=re.MULTILINE)


def main() -> int:
    unnoticed = 0
    with tempfile.TemporaryDirectory(prefix="detr-lens-planted-") as scratch:
        for bug in BUGS:
            copy = scratch_copy(REPO, Path(scratch) / "tree")
            plant(copy, bug)
            failed = failing_tests(copy, bug.tests)
            unnoticed += not failed
            changed = [(a.strip(), b.strip())
                       for a, b in zip(bug.before.splitlines(), bug.after.splitlines()) if a != b]
            print(f"{bug.name}\n  {bug.file}: {changed[0][0]!r} -> {changed[0][1]!r}\n  "
                  + ("\n  ".join(f"FAILS {t}" for t in failed) or f"UNNOTICED by {bug.tests}"), flush=True)
    return 1 if unnoticed else 0


if __name__ == "__main__":
    sys.exit(main())
