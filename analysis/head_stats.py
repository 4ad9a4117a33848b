"""Per layer and head: how far attention reaches (mean attention distance, in original-image pixels) and how
spread it is (entropy, nats). Encoder: each cell's self-attention row, distance from that cell; decoder:
each confident detection's cross-attention, distance from the centre of its box at that layer. Deformable
models: the mean distance of the sampling points from the reference point, weighted by their attention
weights, per layer and feature level."""
from __future__ import annotations

from pathlib import Path

import numpy as np

EPS = 1e-12


def cell_centres(coords) -> np.ndarray:
    """[fh * fw, 2] (x, y) of every cell's centre in original pixels (coords.cell_center, row-major)."""
    fh, fw = coords.feature_size
    return np.array([coords.cell_center(r, c) for r in range(fh) for c in range(fw)], dtype=np.float64)


def _distance_entropy(att: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """att [L, heads, R, N] rows of attention, dist [R, N] -> per row mean distance and entropy [L, heads, R]."""
    d = (att * dist).sum(-1)
    h = -(att * np.log(np.clip(att, EPS, None))).sum(-1)
    return d, h


def record(ins, threshold: float) -> dict:
    """Sums over this image (encoder: over cells; decoder: over detections) and their counts."""
    out: dict = {}
    dets = ins.detections(threshold)
    encoder = getattr(ins, "encoder_attention", None)
    centres = cell_centres(ins.coords)
    if encoder is not None and encoder.shape[-1] == len(centres):
        att = np.asarray(encoder, dtype=np.float64)  # [L, heads, N, N]
        dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)  # [N, N]
        d, h = _distance_entropy(att, dist)
        out["encoder"] = {"distance_sum": d.sum(-1).tolist(), "entropy_sum": h.sum(-1).tolist(), "n": att.shape[2]}
    cross = getattr(ins, "decoder_cross_attention", None)
    if cross is not None and dets:
        queries = [det.query for det in dets]
        att = np.asarray(cross, dtype=np.float64)[:, :, queries]  # [L, heads, D, N]
        boxes = np.stack([ins.coords.boxes_to_pixels(ins.layer_boxes[l][queries]) for l in range(att.shape[0])])
        box_centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # [L, D, 2]
        dist = np.linalg.norm(box_centres[:, :, None] - centres[None, None], axis=-1)  # [L, D, N]
        d, h = _distance_entropy(att, dist[:, None])
        out["decoder"] = {"distance_sum": d.sum(-1).tolist(), "entropy_sum": h.sum(-1).tolist(), "n": len(queries)}
    if hasattr(ins, "sampling_points") and dets:
        out["sampling"] = _sampling_offsets(ins, [det.query for det in dets])
    return out


def _sampling_offsets(ins, queries: list[int]) -> dict:
    """Weighted distance sums [L, levels] of the sampling points from the reference point, and weight sums."""
    layers, levels = ins.layer_logits.shape[0], len(ins.coords.levels) or 1
    dist_sum, weight_sum = np.zeros((layers, levels)), np.zeros((layers, levels))
    for layer in range(layers):
        for q in queries:
            points = ins.sampling_points(q, layer)
            ref = np.asarray(ins.reference_point(q, layer))
            dist = np.linalg.norm(points.xy - ref, axis=-1)  # [N]
            np.add.at(dist_sum[layer], points.level, points.weight * dist)
            np.add.at(weight_sum[layer], points.level, points.weight)
    return {"distance_sum": dist_sum.tolist(), "weight_sum": weight_sum.tolist()}


def summarise(records: list[dict]) -> dict:
    """Means over all cells / detections of all images: {"encoder"|"decoder": {"distance_px", "entropy"}
    [L][heads], "sampling": {"offset_px": [L][levels]}} for what the model has."""
    summary: dict = {}
    for part in ("encoder", "decoder"):
        rows = [r[part] for r in records if part in r]
        if rows:
            n = sum(r["n"] for r in rows)
            summary[part] = {key.replace("_sum", ""): (np.sum([r[key] for r in rows], 0) / n).tolist()
                             for key in ("distance_sum", "entropy_sum")}
            summary[part]["n"] = n
            summary[part]["distance_px"] = summary[part].pop("distance")
    rows = [r["sampling"] for r in records if "sampling" in r]
    if rows:
        dist, weight = np.sum([r["distance_sum"] for r in rows], 0), np.sum([r["weight_sum"] for r in rows], 0)
        summary["sampling"] = {"offset_px": (dist / np.maximum(weight, EPS)).tolist()}
    return summary


def figure(summary: dict, path: Path) -> Path | None:
    """Heatmaps layer x head of distance and entropy for the encoder and decoder (and sampling offsets)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(part, key) for part in ("encoder", "decoder") if part in summary
              for key in ("distance_px", "entropy")]
    panels += [("sampling", "offset_px")] if "sampling" in summary else []
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    for ax, (part, key) in zip(axes[0], panels):
        values = np.asarray(summary[part][key])  # [L, heads or levels]
        im = ax.imshow(values, cmap="viridis", aspect="auto")
        ax.set_title(f"{part}: {key.replace('_', ' ')}", fontsize=9)
        ax.set_xlabel("level" if part == "sampling" else "head")
        ax.set_ylabel("layer")
        ax.set_yticks(range(values.shape[0]), [str(i + 1) for i in range(values.shape[0])])
        ax.set_xticks(range(values.shape[1]), [str(i + 1) for i in range(values.shape[1])])  # 1-based, as the app
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
