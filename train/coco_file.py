"""Reading and checking a COCO-format annotation file before any training starts.

Every problem is a ValueError that names the file and the offending entry, so a
bad data set fails in the first second instead of hours into an epoch.
"""
from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO


@dataclass(frozen=True)
class DataSource:
    """Where a COCO-format data set lives: an annotation file and an image folder."""

    annotations: Path
    images: Path

    @classmethod
    def from_paths(cls, data: str | Path, images: str | Path | None = None) -> "DataSource":
        """``data`` is a folder with annotations.json and images/, or an annotation file
        (then ``images`` names the image folder, as in the standard COCO layout)."""
        data = Path(data)
        if not data.exists():
            raise ValueError(f"{data} does not exist; expected a folder with annotations.json and "
                             "images/, or a COCO annotation file")
        if data.is_dir():
            if images is not None:
                return cls(data / "annotations.json", Path(images))
            return cls(data / "annotations.json", data / "images")
        if images is None:
            raise ValueError(f"{data} is an annotation file; also give its image folder (--images DIR)")
        return cls(data, Path(images))


def read_json(path: Path) -> dict:
    """The parsed annotation file, or a ValueError saying where it is broken."""
    if not path.is_file():
        raise ValueError(f"annotation file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}, "
                         f"column {err.colno}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text file ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with images/annotations/categories, "
                         f"found a {type(data).__name__}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path}: missing or non-list {key!r}; a COCO file needs "
                             "'images', 'annotations' and 'categories' lists")
    if not isinstance(data.setdefault("annotations", []), list):
        raise ValueError(f"{path}: 'annotations' must be a list")
    return data


def _check_entries(data: dict, path: Path) -> None:
    """Field-level checks of the three lists; raise on the first bad entry."""
    for cat in data["categories"]:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or "name" not in cat:
            raise ValueError(f"{path}: category entry {cat!r} needs an integer 'id' and a 'name'")
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise ValueError(f"{path}: image entry {img!r} needs an 'id' and a 'file_name'")
    image_ids = {img["id"] for img in data["images"]}
    category_ids = {cat["id"] for cat in data["categories"]}
    for ann in data["annotations"]:
        where = f"{path}: annotation {ann.get('id', '?') if isinstance(ann, dict) else ann!r}"
        if not isinstance(ann, dict):
            raise ValueError(f"{where} is not a JSON object")
        if ann.get("image_id") not in image_ids:
            raise ValueError(f"{where} refers to image_id {ann.get('image_id')!r}, "
                             "which is not in 'images'")
        if ann.get("category_id") not in category_ids:
            raise ValueError(f"{where} has category_id {ann.get('category_id')!r}, which is not in "
                             f"'categories' (ids {sorted(category_ids)})")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, (int, float)) for v in bbox)):
            raise ValueError(f"{where} has bbox {bbox!r}; expected [x, y, width, height] numbers")


def _fill_defaults(data: dict) -> None:
    """Optional COCO fields that pycocotools' evaluation reads: ids, area, iscrowd."""
    used = {a["id"] for a in data["annotations"] if "id" in a}
    next_id = max(used, default=0) + 1
    for ann in data["annotations"]:
        if "id" not in ann:
            ann["id"], next_id = next_id, next_id + 1
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))


def check_image_files(data: dict, images: Path, path: Path, open_headers: bool = True) -> None:
    """Every listed image exists (and, if ``open_headers``, its header is a readable image)."""
    if not images.is_dir():
        raise ValueError(f"image folder {images} (for {path}) does not exist")
    for img in data["images"]:
        file = images / img["file_name"]
        if not file.is_file():
            raise ValueError(f"{path}: image {img['id']!r} file_name {img['file_name']!r}: "
                             f"{file} does not exist")
        if open_headers:
            check_readable(file, f"{path}: image {img['id']!r}")


def check_readable(file: Path, where: str) -> None:
    """Read the header only: cheap enough to do for every image up front."""
    try:
        with Image.open(file) as im:
            im.size
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{where}: {file} is not a readable image ({err})") from None


def load_coco(source: DataSource, open_headers: bool = True) -> COCO:
    """A checked pycocotools COCO index for ``source``; raises ValueError on any bad entry."""
    data = read_json(source.annotations)
    _check_entries(data, source.annotations)
    check_image_files(data, source.images, source.annotations, open_headers)
    _fill_defaults(data)
    coco = COCO()  # built from the dict: COCO(path) would re-read the file and print to stdout
    coco.dataset = data
    _quiet_index(coco)
    return coco


def _quiet_index(coco: COCO) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
