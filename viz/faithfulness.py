"""Deletion and insertion curves of every explanation of one detection, and their AUC table."""
from __future__ import annotations

import io

from PIL import Image

from detr_core.faithfulness import MethodComparison

TABLE_HEADERS = ["method", "deletion AUC (lower = more faithful)", "insertion AUC (higher = more faithful)"]
BASELINE_STYLE = {"random": ":", "box": "--", "centre": "-.", "D-RISE": "-"}
CAVEAT = ("Deletion blanks the map's most salient pixels first (to a blurred copy) and follows the detection's score "
          "(D-RISE similarity: box IoU x class agreement x objectness); insertion restores them in the same order. "
          "Caveat: perturbed images are not natural images, so this says what the model reacts to, not what it "
          "would use on real data.")


def curves_image(comparison: MethodComparison, width_px: int = 1100) -> Image.Image:
    """Two panels, deletion and insertion, one line per method (baselines dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(width_px / 100, 3.8), dpi=100, sharey=True)
    for ax, key in zip(axes, ("deletion", "insertion")):
        for name, result in comparison.results.items():
            auc = getattr(result, f"{key}_auc")
            ax.plot(result.fractions, getattr(result, key), BASELINE_STYLE.get(name, "-"),
                    lw=2.2 if name == "D-RISE" else 1.4, label=f"{name} ({auc:.2f})")
        ax.set_title(f"{key}: {'lower' if key == 'deletion' else 'higher'} area = more faithful", fontsize=10)
        ax.set_xlabel("fraction of pixels " + ("removed" if key == "deletion" else "restored"))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("detection score (D-RISE similarity)")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def table_rows(comparison: MethodComparison) -> list[list]:
    """[method, deletion AUC, insertion AUC] rows, rounded for display, in the order tested."""
    return [[name, round(d, 3), round(i, 3)] for name, d, i in comparison.table()]


def summary_line(comparison: MethodComparison) -> str:
    """Markdown: which map is most faithful by each curve, and the cost."""
    rows = comparison.table()
    best_del = min(rows, key=lambda r: r[1])[0]
    best_ins = max(rows, key=lambda r: r[2])[0]
    return (f"**Query {comparison.query}**: lowest deletion AUC **{best_del}**, highest insertion AUC "
            f"**{best_ins}**; {comparison.forwards} forwards in {comparison.seconds:.1f} s.")
