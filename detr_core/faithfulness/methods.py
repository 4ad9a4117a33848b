"""Every map the lens can draw for one detection, tested side by side with the same probe (same target,
baseline and endpoints), plus baselines that anchor the scale:

- attention: the last decoder layer's cross-attention, mean over heads (deformable models: "splat", their
  sampling weights splatted on the grid); "layer k": the same at decoder layer k (1-based);
- rollout (models with dense encoder attention) and relevance (DETR: Chefer et al., teaching/explain.py);
- random: random values on the feature grid, the curves and AUCs averaged over `random_seeds` seeds;
- box: 1 inside the detection's own box; centre: a Gaussian at the input's centre (sigma a quarter of each
  side), the "objects are in the middle" prior;
- D-RISE (drise_masks > 0): the model-agnostic reference map of drise.py.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..inspection.inspection import Inspection
from .detector import Detector
from .drise import drise_map
from .perturb import FaithfulnessResult, Probe, Progress

RANDOM, BOX, CENTRE, DRISE = "random", "box", "centre", "D-RISE"
BASELINE_METHODS = (RANDOM, BOX, CENTRE, DRISE)


@dataclass(frozen=True)
class MethodComparison:
    """results: each method's curves and AUCs; maps: each method's map over the input [h, w] (random: the
    first seed's); forwards: model forwards in all; seconds: wall time."""

    query: int
    results: dict[str, FaithfulnessResult]
    maps: dict[str, np.ndarray]
    forwards: int
    seconds: float

    def table(self) -> list[tuple[str, float, float]]:
        """(method, deletion AUC (lower is better), insertion AUC (higher is better)) in the order tested."""
        return [(name, r.deletion_auc, r.insertion_auc) for name, r in self.results.items()]


def explanation_maps(model, ins, query: int) -> dict[str, np.ndarray]:
    """Every map the lens draws for `query`, each over ins.coords' feature grid [fh, fw]."""
    layers = ins.layer_logits.shape[0]
    last = "splat" if hasattr(ins, "sampling_points") else "attention"  # deformable: sampling weights splatted
    maps = {last: ins.decoder_map(query, layer=-1)}
    maps.update({f"layer {k + 1}": ins.decoder_map(query, layer=k) for k in range(layers)})
    encoder = getattr(ins, "encoder_attention", None)
    cells = ins.coords.feature_size[0] * ins.coords.feature_size[1]
    if encoder is not None and encoder.shape[-1] == cells:
        from ..teaching.explain import detection_rollout

        maps["rollout"] = detection_rollout(ins, query)
    if type(ins) is Inspection and hasattr(model, "backbone"):
        from ..teaching.explain import explain_detection

        maps["relevance"] = explain_detection(model, ins, query).relevance
    return maps


def baseline_maps(probe: Probe, box_xyxy, seeds: int) -> dict[str, list[np.ndarray]]:
    """The reference maps over the input [h, w]: random (one per seed), the detection's box, the centre."""
    h, w = probe.prepared.input_size
    grid = probe.coords.feature_size if probe.coords is not None else (h, w)
    randoms = [np.random.default_rng(1000 + s).random(grid) for s in range(seeds)]
    randoms = [probe.input_map(r) if probe.coords is not None else r for r in randoms]
    x0, y0, x1, y1 = probe.coords.box_to_input(box_xyxy) if probe.coords is not None else box_xyxy
    ys, xs = np.arange(h)[:, None] + 0.5, np.arange(w)[None, :] + 0.5
    box = ((ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)).astype(np.float32)  # [h, w]
    centre = np.exp(-0.5 * (((ys - h / 2) / (h / 4)) ** 2 + ((xs - w / 2) / (w / 4)) ** 2))
    return {RANDOM: randoms, BOX: [box], CENTRE: [centre.astype(np.float32)]}


def mean_result(results: list[FaithfulnessResult]) -> FaithfulnessResult:
    """The mean curve and mean AUCs of runs over the same steps (random maps over seeds)."""
    first = results[0]
    return FaithfulnessResult(first.fractions, np.mean([r.deletion for r in results], 0),
                              np.mean([r.insertion for r in results], 0),
                              float(np.mean([r.deletion_auc for r in results])),
                              float(np.mean([r.insertion_auc for r in results])), first.baseline,
                              sum(r.forwards for r in results))


def compare_explanations(model, ins, query: int, steps: int = 20, baseline="blur", batch_size: int = 8,
                         random_seeds: int = 3, drise_masks: int = 0, methods: Optional[list[str]] = None,
                         progress: Optional[Progress] = None) -> MethodComparison:
    """Deletion and insertion of every explanation of `query` in `ins` (an inspection of `model`, DETR or
    family) and of the baselines; `methods` keeps only the named ones. Forwards: 2 + 2 (steps - 1) per map
    (random: per seed) + drise_masks."""
    start = time.perf_counter()
    detector = Detector(model)
    probe = Probe(detector, detector.prepare(ins.image), query, baseline, batch_size, ins.coords)
    box = tuple(ins.coords.boxes_to_pixels(ins.boxes[query])[0])
    grid_maps = explanation_maps(model, ins, query)
    maps = {name: [probe.input_map(m)] for name, m in grid_maps.items()}
    maps.update(baseline_maps(probe, box, random_seeds))
    if methods is not None:
        unknown = sorted(set(methods) - set(maps) - {DRISE})
        if unknown:
            raise ValueError(f"unknown methods {unknown}; this model offers {sorted(maps) + [DRISE]}")
        maps = {k: v for k, v in maps.items() if k in methods}
    per_map = 2 * (steps - 1)
    total = 2 + per_map * (sum(len(v) for v in maps.values()) + (drise_masks > 0)) + max(drise_masks, 0)
    report = _overall(progress, probe, total)
    if drise_masks > 0:
        maps[DRISE] = [drise_map(probe, drise_masks, progress=report)]
    results = {name: mean_result([probe.curves(m, steps, report) for m in ms])
               for name, ms in maps.items()}
    return MethodComparison(query, results, {k: v[0] for k, v in maps.items()}, probe.forwards,
                            time.perf_counter() - start)



def _overall(progress: Optional[Progress], probe: Probe, total: int) -> Optional[Progress]:
    """Each step's own (done, total) -> the forwards of the whole comparison so far."""
    if progress is None:
        return None
    return lambda _done, _total: progress(min(probe.forwards, total), total)
