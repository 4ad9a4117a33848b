"""The official model zoo: download once (hash checked, progress bar) into the torch hub cache."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/detr/"


@dataclass(frozen=True)
class ZooEntry:
    filename: str  # the 8 hex digits after the last dash prefix the file's SHA-256 (torch.hub convention)
    dilation: bool
    backbone: str
    coco_ap: float  # COCO val2017 box AP the authors report

    @property
    def sha256_prefix(self) -> str:
        return Path(self.filename).stem.rsplit("-", 1)[-1]


MODEL_ZOO = {
    "detr-r50": ZooEntry("detr-r50-e632da11.pth", False, "resnet50", 42.0),
    "detr-r50-dc5": ZooEntry("detr-r50-dc5-f0fb7ef5.pth", True, "resnet50", 43.3),
    "detr-r101": ZooEntry("detr-r101-2c7b67e5.pth", False, "resnet101", 43.5),
    "detr-r101-dc5": ZooEntry("detr-r101-dc5-a2e86def.pth", True, "resnet101", 44.9),
}


def cache_dir() -> Path:
    """Where downloaded checkpoints live: <torch hub dir>/checkpoints (TORCH_HOME moves it)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_path(entry: ZooEntry) -> Path:
    return cache_dir() / entry.filename


def fetch_checkpoint(entry: ZooEntry, base_url: str | None = None, timeout: float = 30.0,
                     progress: bool = True, allow_download: bool = True) -> Path:
    """Path of the entry's file, downloading it first if it is not cached. No network when it is, nor with
    allow_download=False (then RuntimeError naming the URL and where to put the file). base_url: the official
    server (OFFICIAL_BASE_URL as it is at the call) unless given."""
    path = cached_path(entry)
    if path.is_file():
        return path
    url = (base_url or OFFICIAL_BASE_URL).rstrip("/") + "/" + entry.filename
    if not allow_download:
        raise RuntimeError(f"{entry.filename} is not in the cache ({path}) and downloads are not allowed for this"
                           f" load; download {url} on a machine that may, and put it at {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _download(url, path, entry.sha256_prefix, timeout, progress)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise RuntimeError(
            f"could not download {url} ({err}). With no network, download it elsewhere and put it at {path}"
        ) from None
    return path


def _download(url: str, dest: Path, sha256_prefix: str, timeout: float, progress: bool) -> None:
    """Stream url to a temporary file beside dest, check the hash, then rename (never a half file in the cache)."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        found = digest.hexdigest()
        if not found.startswith(sha256_prefix):
            raise RuntimeError(
                f"{url} downloaded, but its SHA-256 {found[:16]}... does not start with {sha256_prefix}:"
                " the file is corrupt or not the official one; nothing was saved"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
