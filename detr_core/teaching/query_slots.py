"""Where each query slot puts its boxes over a whole data set (the DETR paper's Fig. 7).

Each slot learns to specialise in certain areas and box sizes; seeing that needs one plain forward pass per
image, so it is computed once, stored, and drawn from the file.

    python -m detr_core.teaching.query_slots --model SOURCE (--data DIR_OR_JSON [--images DIR] | --images DIR) --out FILE.npz
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .ground_truth import CocoSet, image_folder
from ..model.preprocess import image_to_tensor, load_image
from ..model.twin import inference_twin

Progress = Callable[[int, int], None]  # (images done, images in all)


@dataclass(frozen=True)
class QuerySlotStats:
    """Every slot's prediction on every image. centres [I, Q, 2] and sizes [I, Q, 2] (w, h) as fractions of the
    image; scores [I, Q] best real-class probability; labels [I, Q]; images [I] file names."""

    centres: np.ndarray
    sizes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    images: tuple[str, ...]
    model: str

    @property
    def num_images(self) -> int:
        return self.centres.shape[0]

    @property
    def num_queries(self) -> int:
        return self.centres.shape[1]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, centres=self.centres, sizes=self.sizes, scores=self.scores, labels=self.labels,
                            images=np.asarray(self.images), model=np.asarray(self.model))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "QuerySlotStats":
        try:
            with np.load(path, allow_pickle=False) as f:
                return cls(f["centres"], f["sizes"], f["scores"], f["labels"], tuple(str(s) for s in f["images"]),
                           str(f["model"]))
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path} is not a query-slot file written by detr_core.teaching.query_slots ({err})") from None


def _one_image(model: nn.Module, runner: nn.Module, file: Path) -> np.ndarray:
    """[Q, 4 + C + 1]: one forward pass of `runner` (no attention kept), boxes then probabilities."""
    x = image_to_tensor(load_image(file), model.preprocess)[None]  # [1, 3, h, w]
    with torch.inference_mode():
        out = runner(x.to(next(runner.parameters()).device))
    probs = out["pred_logits"][0].float().softmax(-1)  # [Q, C+1]
    return torch.cat([out["pred_boxes"][0].float(), probs], -1).cpu().numpy()


def collect(model: nn.Module, files: Sequence[str | Path], model_name: str = "",
            progress: Optional[Progress] = None) -> QuerySlotStats:
    """Run `model` on every file and keep each slot's box centre, size and score. What runs is the model's
    inference twin (detr_core.inference_twin: the same numbers, faster)."""
    if not files:
        raise ValueError("no images to compute query-slot statistics on")
    runner = inference_twin(model)
    rows = []
    for i, file in enumerate(files):
        rows.append(_one_image(model, runner, Path(file)))
        if progress is not None:
            progress(i + 1, len(files))
    stacked = np.stack(rows)  # [I, Q, 4 + C + 1]
    boxes, probs = stacked[..., :4], stacked[..., 4:-1]  # [I, Q, 4], [I, Q, C]
    return QuerySlotStats(boxes[..., :2].astype(np.float32), boxes[..., 2:].astype(np.float32),
                          probs.max(-1).astype(np.float32), probs.argmax(-1).astype(np.int64),
                          tuple(Path(f).name for f in files), model_name)


def data_files(data: str | None, images: str | None) -> list[Path]:
    """--data (a COCO set; --images then names its image folder) or --images alone (a folder of images)."""
    if data is not None:
        return CocoSet(data, images).files()
    if images is not None:
        return image_folder(images)
    raise ValueError("give --data (a COCO-format set) or --images (a folder of images)")


def main(argv: Sequence[str] | None = None) -> None:
    from ..weights.loading import load_detr as load_model  # here, so that importing this module never touches checkpoints

    parser = argparse.ArgumentParser(prog="python -m detr_core.teaching.query_slots", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model-zoo name, shapes, untrained or a checkpoint path")
    parser.add_argument("--data", help="COCO-format set: folder with annotations.json and images/, or the json file")
    parser.add_argument("--images", help="image folder (alone: every image in it; with --data: its images)")
    parser.add_argument("--out", required=True, help="output .npz")
    args = parser.parse_args(argv)
    try:
        files = data_files(args.data, args.images)
        model = load_model(args.model)
    except (ValueError, RuntimeError) as err:
        parser.error(str(err))

    def report(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            print(f"{done}/{total} images", flush=True)

    stats = collect(model, files, str(args.model), report)
    print(f"wrote {stats.save(args.out)}: {stats.num_images} images x {stats.num_queries} query slots")


if __name__ == "__main__":
    main()
