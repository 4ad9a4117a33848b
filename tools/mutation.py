"""Mutation testing of the modules where a wrong number reaches the user, one module at a time (mutmut 3).

    python tools/mutation.py                    # every target, one after the other
    python tools/mutation.py coords matcher     # some targets
    python tools/mutation.py --list             # targets, their modules and test files
    python tools/mutation.py --table            # the scores of the last runs (JSON reports) as a Markdown table
    python tools/mutation.py --collect weights  # the report of a run that was stopped early (from its workdir)

mutmut changes one operator, constant or argument at a time (a "mutant") and runs the tests; a mutant the
tests do not notice "survives". Each target mutates only its module(s) and runs only the test files meant
to cover them, so a mutant caught by some unrelated test still counts as a survivor: the module's own tests
must catch it. Everything happens in a scratch copy of the working tree (tracked and new files), so the
repository is never touched; ../shared is linked beside the copy, as the tests expect.

Writes <out>/<target>.json (counts, score, wall time, each survivor's diff) and prints a table.
Not part of CI: it takes tens of minutes. Needs mutmut 3 (the `mutation` extra: pip install -e ".[mutation]").
The surviving mutants and the reason each survives are in tools/mutation.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("detr_core", "train", "viz", "webapp")  # importable in the copy; only targets are mutated
ALSO_COPY = ("pytest.ini", "examples")  # what the tests read besides the packages and tests/


@dataclass(frozen=True)
class Target:
    modules: tuple[str, ...]  # files mutated
    tests: tuple[str, ...]  # the only test files run against them
    skip_lines: tuple[str, ...] = ()  # regular expressions: lines never mutated (say why at the target)


TARGETS = {
    # test_family_geometry.py: the multi-level (DETR-family) half of the coordinate module
    "coords": Target(("detr_core/inspection/coords.py",), ("tests/test_coords.py", "tests/test_family_geometry.py")),
    "inspection": Target(("detr_core/inspection/inspection.py",), ("tests/test_inspect.py", "tests/test_compact.py")),
    "preprocess": Target(("detr_core/model/preprocess.py",), ("tests/test_preprocess.py",)),
    "matcher": Target(("detr_core/objective/matcher.py",), ("tests/test_matcher.py",)),
    "criterion": Target(("detr_core/objective/criterion.py",), ("tests/test_criterion.py",)),
    # the command line's help texts are prose for the reader, not behaviour: not mutated
    "evaluate": Target(("train/evaluate.py",),
                       ("tests/test_train_evaluate.py", "tests/test_train_attention_metric.py"),
                       skip_lines=(r"\bhelp=", r"\bdescription=")),
    "compact": Target(("detr_core/inspection/compact.py",), ("tests/test_compact.py",)),
    "compare": Target(("detr_core/inspection/compare.py",), ("tests/test_compare.py",)),
    # test_hub.py: load_model's Hugging Face Hub branch (locate_hf) lives in loading.py
    "weights": Target(("detr_core/weights/loading.py", "detr_core/weights/checkpoint_io.py"),
                      ("tests/test_weights.py", "tests/test_hub.py")),
    # issue 24: the DETR family, the Hugging Face loader, the inspection store and the model sources. The family
    # and the loader are split by module so that each target fits a sitting on the 2-core machine; their targets
    # run the hand-worked test files (whole-model parity with transformers stays in test_hf_parity.py and
    # test_family.py, run by CI: a mutant there costs a minute of model building)
    "model_sources": Target(("webapp/model_sources.py",),
                            ("tests/test_model_sources.py", "tests/test_app_model_sources.py")),
    "store": Target(("webapp/store.py",), ("tests/test_store.py",)),
    "hf_config": Target(("detr_core/weights/hf_config.py",), ("tests/test_hf_config.py", "tests/test_hf_bad_input.py")),
    "hf_keys": Target(("detr_core/weights/hf_keys.py", "detr_core/weights/hf_model.py",
                       "detr_core/weights/hf_export.py"),
                      ("tests/test_hf_config.py", "tests/test_hf_bad_input.py")),
    # the family's scores, capabilities and registry: hand-worked tests on arrays, no model
    "family_scoring": Target(("detr_core/family/scoring.py", "detr_core/family/capabilities.py",
                              "detr_core/family/registry.py"), ("tests/test_family_geometry.py",)),
    # sampling points and their splat: by hand, and on tiny models against the captured calls
    "family_geometry": Target(("detr_core/family/deformable.py",),
                              ("tests/test_family_geometry.py", "tests/test_family_reference.py")),
    # per-layer heads and the capture: tiny transformers models against their own outputs
    "family_layers": Target(("detr_core/family/layers.py", "detr_core/family/capture.py",
                             "detr_core/family/function_tap.py"),
                            ("tests/test_family.py", "tests/test_family_reference.py")),
    # packing a forward pass into a result, the result's methods, loading
    "family_inspect": Target(("detr_core/family/inspect.py", "detr_core/family/inspection.py",
                              "detr_core/family/loading.py"),
                             ("tests/test_family.py", "tests/test_family_reference.py", "tests/test_family_loading.py")),
}

# mutmut's exit codes per mutant (mutmut.stats.status_by_exit_code): a failing test run, a timeout or a
# crash all mean the tests noticed the mutant.
KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
          255: "timeout", -11: "segfault", -9: "segfault", 37: "caught by type check"}
NOT_KILLED = {0: "survived", 5: "no tests", 33: "no tests", 35: "suspicious"}


def tracked_and_new_files(repo: Path) -> list[str]:
    """Tracked files plus untracked files git does not ignore, as they are in the working tree now."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=repo,
                         check=True, capture_output=True).stdout.decode()
    return [name for name in out.split("\0") if name and (repo / name).is_file()]


def scratch_copy(repo: Path, dest: Path) -> Path:
    """A fresh copy of the working tree at dest, with ../shared linked beside it when the repo has one."""
    if dest.exists():
        shutil.rmtree(dest)
    for name in tracked_and_new_files(repo):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, dest / name)
    link_shared(repo, dest.parent)
    return dest


def link_shared(repo: Path, where: Path) -> None:
    """where/shared -> the repository's ../shared (reference key lists the tests read), if there is one."""
    shared = repo.parent / "shared"
    if shared.is_dir() and not (where / "shared").exists():
        (where / "shared").symlink_to(shared)


def mutmut_config(target: Target) -> str:
    """setup.cfg [mutmut] section: what to copy, what to mutate, which tests to run."""
    lines = ["[mutmut]", "source_paths =", *(f"    {p}" for p in SOURCE_PACKAGES),
             "only_mutate =", *(f"    {m}" for m in target.modules),
             "also_copy =", *(f"    {p}" for p in ALSO_COPY),
             "pytest_add_cli_args_test_selection =", *(f"    {t}" for t in target.tests),
             # the tests that a warning names its caller's line see mutmut's trampoline as the caller: left out
             "pytest_add_cli_args =", "    -p", "    no:cacheprovider", "    -k", "    not points_at_the_callers_line",
             # torch is not fork-safe once used: fork every mutant's run from a clean server process
             "process_isolation = forkserver",
             *(["do_not_mutate_patterns ="] + [f"    {p}" for p in target.skip_lines] if target.skip_lines else []),
             "use_git_change_detection = false"]
    return "\n".join(lines) + "\n"


def run_target(name: str, target: Target, workdir: Path, children: int) -> dict:
    """Mutate one target in its own scratch copy; -> counts, score, wall time and the survivors' diffs."""
    copy = scratch_copy(REPO, workdir / name / "tree")
    link_shared(REPO, copy)  # mutmut runs the tests one level down, in copy/mutants/tests
    (copy / "setup.cfg").write_text(mutmut_config(target))
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # a mutation run is not CI
    # mutmut runs, for each mutant, only the tests that called the mutated function while it collected its stats;
    # a model a test file builds once and shares is tied to the first test that built it, so the tests that read
    # it later never met the mutants (family_inspect's `_dense` ran under 4 tests that only compare outputs). With
    # this set, those files build per test.
    env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", DETR_LENS_FRESH_FIXTURES="1")
    start, load_before, cpu_before = time.monotonic(), os.getloadavg()[0], _children_cpu_s()
    log = workdir / name / "mutmut.log"
    with open(log, "wb") as handle:
        code = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children)],
                              cwd=copy, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    wall, cpu = time.monotonic() - start, _children_cpu_s() - cpu_before
    if code != 0:
        raise RuntimeError(f"mutmut failed on {name} (exit code {code}); see {log}")
    return collect(name, target, copy, env, wall, cpu, load_before)


def collect(name: str, target: Target, copy: Path, env: dict, wall: float, cpu: float, load_before: float) -> dict:
    """The report from mutmut's results in `copy`. A run stopped early leaves mutants without a result: they
    are counted as `untested` and left out of the score (which then covers the tested ones only)."""
    statuses = {}
    for module in target.modules:
        meta = json.loads((copy / "mutants" / f"{module}.meta").read_text())
        statuses.update(meta["exit_code_by_key"])
    untested = sorted(key for key, code in statuses.items() if code is None)
    tested = {key: code for key, code in statuses.items() if code is not None}
    survivors = {key: NOT_KILLED.get(code, f"exit code {code}") for key, code in tested.items()
                 if code not in KILLED}
    killed = len(tested) - len(survivors)
    diffs = _diffs(copy, sorted(survivors), env)
    return {
        "target": name, "modules": list(target.modules), "tests": list(target.tests),
        "skip_lines": list(target.skip_lines),
        "mutants": len(tested), "killed": killed, "score": killed / len(tested) if tested else 0.0,
        "untested": len(untested), "untested_by_function": _by_function(untested),
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "survivors": [{"mutant": key, "status": survivors[key], "diff": diffs[key]} for key in sorted(survivors)],
    }


def _by_function(mutants: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in mutants:
        function = key.rsplit(".", 1)[-1].split("__mutmut_")[0]
        counts[function] = counts.get(function, 0) + 1
    return counts


def _children_cpu_s() -> float:
    """User + system CPU seconds of every finished descendant: unlike wall time, not inflated when other
    work shares the cores."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
print(json.dumps({name: get_diff_for_mutant(name, path=find_mutant(name).path) for name in json.load(sys.stdin)}))
"""


def _diffs(copy: Path, mutants: list[str], env: dict) -> dict[str, str]:
    """Each mutant's diff, from one process (`mutmut show` would start one per mutant)."""
    out = subprocess.run([sys.executable, "-c", _DIFFS], cwd=copy, env=env, input=json.dumps(mutants),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"could not read the mutants' diffs in {copy}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"some of {sorted(TARGETS)} (default: all)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--table", action="store_true", help="print the reports in --out as a Markdown table")
    parser.add_argument("--collect", action="store_true",
                        help="write the reports from the results already in --workdir (e.g. of a run stopped "
                             "early; wall and CPU time are then unknown, recorded as 0)")
    parser.add_argument("--out", type=Path, default=REPO / "test-artifacts" / "mutation",
                        help="where the per-target JSON reports go")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "detr-lens-mutation",
                        help="scratch copies of the working tree (replaced on every run)")
    parser.add_argument("--children", type=int, default=2, help="mutants tested in parallel")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {sorted(TARGETS)}")
    return args


def markdown_table(out: Path) -> str:
    """One row per target that has a JSON report in `out` (as tools/mutation.md and the README show them)."""
    rows = ["| target | module(s) | mutants | killed | score | wall s | CPU s |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in TARGETS:
        path = out / f"{name}.json"
        if path.is_file():
            r = json.loads(path.read_text())
            modules = ", ".join(f"`{m}`" for m in r["modules"])
            partial = f" (+{r['untested']} untested)" if r.get("untested") else ""
            rows.append(f"| {name} | {modules} | {r['mutants']}{partial} | {r['killed']} | {r['score']:.1%} | "
                        f"{r['wall_s']:.0f} | {r['cpu_s']:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        print(markdown_table(args.out))
        return 0
    if args.list:
        for name, target in TARGETS.items():
            print(f"{name:11s} {', '.join(target.modules)}\n{'':11s} tests: {', '.join(target.tests)}")
        return 0
    try:
        import mutmut  # noqa: F401  (run as `python -m mutmut` below)
    except ImportError:
        print('mutmut is not installed: pip install "mutmut>=3.8.1,<4" (or pip install -e ".[mutation]")', file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.collect:
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        for name in args.targets or list(TARGETS):
            report = collect(name, TARGETS[name], args.workdir / name / "tree", env, 0.0, 0.0, os.getloadavg()[0])
            (args.out / f"{name}.json").write_text(json.dumps(report, indent=1))
            print(f"{name}: {report['killed']}/{report['mutants']} killed ({report['score']:.1%}), "
                  f"{report['untested']} untested {report['untested_by_function']}")
        return 0
    print(f"{'target':11s} {'mutants':>7s} {'killed':>6s} {'score':>6s} {'wall':>7s} {'CPU':>7s}  "
          "load (1 min, start/end)")
    for name in args.targets or list(TARGETS):
        report = run_target(name, TARGETS[name], args.workdir, args.children)
        (args.out / f"{name}.json").write_text(json.dumps(report, indent=1))
        print(f"{name:11s} {report['mutants']:7d} {report['killed']:6d} {report['score']:6.1%} "
              f"{report['wall_s']:6.0f}s {report['cpu_s']:6.0f}s  {report['load_average_1min']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
