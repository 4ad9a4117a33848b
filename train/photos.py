"""Natural photos for the synthetic data's backgrounds and negatives: which ones, from where, under what licence.

Every photo ships inside a package that installs here (Debian wallpaper packages, Python packages' sample
data), so the training data can be rebuilt anywhere with no other download:

    apt-get install lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds plasma-workspace-wallpapers
    pip install scikit-image scikit-learn
    python -m train.photos --out data/photos

``--out`` receives ``train/`` and ``heldout/`` (each photo downscaled to at most 1024 px, JPEG) and
``SOURCES.md`` with every photo's package, author and licence. The split is fixed here, not drawn: the
held-out photos (portraits, landscapes, a street, a room, leaves, animals) are never used for training, so
the negatives measurement (``python -m train.evaluate --negatives``) is on photos the model never saw.
Each file's SHA-256 prefix is checked, so a different package version cannot silently change the data.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

MAX_SIDE = 1024
SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class PhotoSource:
    """One photo: where an installed package puts it, who made it, its licence and its split."""

    name: str
    package: str  # Debian package, or "python:<module>" for a Python package's data
    path: str  # absolute for Debian files; relative to the module's folder for Python packages
    author: str
    licence: str
    split: str
    sha256: str  # prefix of the original file's SHA-256

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"{self.name}: split {self.split!r} is not one of {SPLITS}")


_LOMIRI = "/usr/share/backgrounds/"
_MATE = "/usr/share/backgrounds/mate/nature/"
_KDE = "/usr/share/wallpapers/"
L16, L20, MATE, KDE = ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mate-backgrounds",
                       "plasma-workspace-wallpapers")
SKIMAGE, SKLEARN, MPL = "python:skimage", "python:sklearn", "python:matplotlib"

PHOTOS: tuple[PhotoSource, ...] = (
    # --- training backgrounds -----------------------------------------------------------------------
    PhotoSource("bridge", L16, _LOMIRI + "Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk", "CC-BY-SA-4.0", "train", "bd86b081f9975e2b"),
    PhotoSource("dragonfly", L16, _LOMIRI + "Dragonfly_by_Bolly.jpg", "Bolly", "CC-BY-SA-4.0", "train", "af5af17841009732"),
    PhotoSource("fig", L16, _LOMIRI + "Picture_0B_by_freespace.jpg", "Trevor Freespace", "CC-BY-4.0", "train", "c8c0ab18e48d9e04"),
    PhotoSource("brushes", L16, _LOMIRI + "Picture_1A_by_freespace.jpg", "Trevor Freespace", "CC-BY-4.0", "train", "89e86af38d04daae"),
    PhotoSource("bird-lamp", L16, _LOMIRI + "free_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0", "train", "85a5453c2fed514c"),
    PhotoSource("picos", L16, _LOMIRI + "picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0", "train", "414d0072b2f6f2c5"),
    PhotoSource("seeding", L16, _LOMIRI + "seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0", "train", "a5634d1ab5e41a35"),
    PhotoSource("aqua", MATE, _MATE + "Aqua.jpg", "Charles Barbin", "GPL-2+", "train", "5c30118205982da4"),
    PhotoSource("blinds", MATE, _MATE + "Blinds.jpg", "Lennart Poettering", "GPL-2+", "train", "f7aac0dcc2e06d04"),
    PhotoSource("dune", MATE, _MATE + "Dune.jpg", "Marco Cogoni", "GPL-2+", "train", "8a67c2cb0be8c46b"),
    PhotoSource("fresh-flower", MATE, _MATE + "FreshFlower.jpg", "Jens Ansorg", "GPL-2+", "train", "972b0a0c4e5e3fa9"),
    PhotoSource("garden", MATE, _MATE + "Garden.jpg", "MATE backgrounds authors", "GPL-2+", "train", "d3095ee09d425ef2"),
    PhotoSource("meadow", MATE, _MATE + "GreenMeadow.jpg", "Timothy Schellhase", "GPL-2+", "train", "8fa0de0aa4089f73"),
    PhotoSource("raindrops", MATE, _MATE + "RainDrops.jpg", "blackcombwhistler07", "GPL-2+", "train", "3e4ea9671c28c90a"),
    PhotoSource("two-wings", MATE, _MATE + "TwoWings.jpg", "Charles Barbin", "GPL-2+", "train", "665e5abf8a539907"),
    PhotoSource("wood", MATE, _MATE + "Wood.jpg", "Jean-François Fortin Tam", "GPL-2+", "train", "19c78500ac00a622"),
    PhotoSource("cold-ripple", KDE, _KDE + "ColdRipple/contents/images/2560x1600.jpg", "KDE Visual Design Group", "GPL-2+", "train", "05bef6722fc0ed81"),
    PhotoSource("darkest-hour", KDE, _KDE + "DarkestHour/contents/images/2560x1600.jpg", "KDE Visual Design Group", "GPL-2+", "train", "8e3703fae3a3c217"),
    PhotoSource("kite", KDE, _KDE + "Kite/contents/images/2560x1600.jpg", "KDE Visual Design Group", "GPL-2+", "train", "bdca288ce296a981"),
    PhotoSource("one-stands-out", KDE, _KDE + "OneStandsOut/contents/images/2560x1600.jpg", "KDE Visual Design Group", "GPL-2+", "train", "cb507baf1dafdcae"),
    PhotoSource("volna", KDE, _KDE + "Volna/contents/images/5120x2880.jpg", "KDE Visual Design Group", "GPL-2+", "train", "abc30b4fc6f6a83b"),
    PhotoSource("chelsea", SKIMAGE, "data/chelsea.png", "Stefan van der Walt", "CC0-1.0", "train", "596aa1e7cb875eb7"),
    PhotoSource("rocket", SKIMAGE, "data/rocket.jpg", "SpaceX", "public domain", "train", "c2dd0de7c538df8d"),
    PhotoSource("brick", SKIMAGE, "data/brick.png", "CC0Textures", "CC0-1.0", "train", "7966caf324f6ba84"),
    PhotoSource("grass", SKIMAGE, "data/grass.png", "CC0Textures", "CC0-1.0", "train", "b6b6022426b38936"),
    PhotoSource("gravel", SKIMAGE, "data/gravel.png", "CC0Textures", "CC0-1.0", "train", "c48615b451bf1e60"),
    PhotoSource("camera", SKIMAGE, "data/camera.png", "Lav Varshney", "CC0-1.0", "train", "b0793d2adda0fa6a"),
    PhotoSource("hubble", SKIMAGE, "data/hubble_deep_field.jpg", "NASA", "public domain", "train", "3a19c5dd8a927a93"),
    PhotoSource("flower", SKLEARN, "datasets/images/flower.jpg", "vultilion (Flickr)", "CC-BY-2.0", "train", "a77f6ec41e353afd"),
    # --- held out: never used for training, only for measuring --------------------------------------
    PhotoSource("dogs", L16, _LOMIRI + "friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0", "heldout", "cc40e313c74e421e"),
    PhotoSource("aitzgorri", L16, _LOMIRI + "aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0", "heldout", "66268e7b48f8854d"),
    PhotoSource("creek", L16, _LOMIRI + "life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0", "heldout", "4c119350ead80201"),
    PhotoSource("sunset", L16, _LOMIRI + "sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0", "heldout", "474dab6a4b9f94dc"),
    PhotoSource("room", L16, _LOMIRI + "Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0", "heldout", "d2e96e6d4da40dd8"),
    PhotoSource("kleiber", L20, _LOMIRI + "Kleiber_by_Lukas_Baubkus.jpg", "Lukas Baubkus", "CC-BY-SA-3.0", "heldout", "6572410c09f4492c"),
    PhotoSource("ladybird", MATE, _MATE + "LadyBird.jpg", "MATE backgrounds authors", "GPL-2+", "heldout", "e35a9a4126ef969c"),
    PhotoSource("yellow-flower", MATE, _MATE + "YellowFlower.jpg", "MATE backgrounds authors", "GPL-2+", "heldout", "254da96256acb7ad"),
    PhotoSource("storm", MATE, _MATE + "Storm.jpg", "Sergey Nazarov", "GPL-2+", "heldout", "77ca53077831d323"),
    PhotoSource("boats", KDE, _KDE + "BytheWater/contents/images/2560x1600.jpg", "KDE Visual Design Group", "GPL-2+", "heldout", "c272434ef39f2abf"),
    PhotoSource("evening-glow", KDE, _KDE + "EveningGlow/contents/images/2560x1600.jpg", "KDE Visual Design Group", "GPL-2+", "heldout", "586682dcb362b9f6"),
    PhotoSource("leaves", KDE, _KDE + "FallenLeaf/contents/images/2560x1600.jpg", "KDE Visual Design Group", "GPL-2+", "heldout", "95603a6560c7e8d5"),
    PhotoSource("forest-path", KDE, _KDE + "Path/contents/images/2560x1600.jpg", "KDE Visual Design Group", "GPL-2+", "heldout", "7477457d7f17b736"),
    PhotoSource("lake", KDE, _KDE + "summer_1am/contents/images/2560x1600.jpg", "KDE Visual Design Group", "GPL-2+", "heldout", "c868b50789591dd4"),
    PhotoSource("architecture", KDE, _KDE + "Grey/contents/images/2560x1600.jpg", "KDE Visual Design Group", "GPL-2+", "heldout", "88c31d8944b7e693"),
    PhotoSource("astronaut", SKIMAGE, "data/astronaut.png", "NASA", "public domain", "heldout", "88431cd9653ccd53"),
    PhotoSource("coffee", SKIMAGE, "data/coffee.png", "Rachel Michetti", "CC0-1.0", "heldout", "cc02f8ca188b167c"),
    PhotoSource("temple", SKLEARN, "datasets/images/china.jpg", "danielbuechele (Flickr)", "CC-BY-2.0", "heldout", "8378025ad2519d64"),
    PhotoSource("grace-hopper", MPL, "mpl-data/sample_data/grace_hopper.jpg", "US Navy", "public domain", "heldout", "a8ca6d734765703b"),
)


def locate(source: PhotoSource) -> Path:
    """The installed file of ``source``; RuntimeError naming the package to install if it is absent."""
    if source.package.startswith("python:"):
        module = source.package.split(":", 1)[1]
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"photo {source.name!r} ships with the Python package {module!r}, which is not "
                               f"installed: pip install {'scikit-learn' if module == 'sklearn' else 'scikit-image' if module == 'skimage' else module}")
        path = Path(list(spec.submodule_search_locations)[0]) / source.path
    else:
        path = Path(source.path)
    if not path.is_file():
        raise RuntimeError(f"photo {source.name!r} ({path}) is missing: install the Debian package "
                           f"{source.package} (apt-get install {source.package})")
    return path


def checked_bytes(source: PhotoSource, path: Path) -> bytes:
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if not found.startswith(source.sha256):
        raise RuntimeError(f"photo {source.name!r} ({path}) has SHA-256 {found[:16]}..., expected "
                           f"{source.sha256}...: another version of {source.package} than the one the "
                           "project's data was built from")
    return data


def collect(out: Path, max_side: int = MAX_SIDE, photos: tuple[PhotoSource, ...] = PHOTOS) -> dict[str, int]:
    """Write every photo, downscaled to ``max_side``, into ``out/<split>/<name>.jpg`` and ``out/SOURCES.md``.
    -> photos written per split. Nothing is written unless every photo is found and checked."""
    found = [(s, checked_bytes(s, locate(s))) for s in photos]  # fail before writing anything
    counts = dict.fromkeys(SPLITS, 0)
    for source, data in found:
        folder = out / source.split
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.open(io.BytesIO(data)).convert("RGB")
        image.thumbnail((max_side, max_side), Image.LANCZOS)
        image.save(folder / f"{source.name}.jpg", quality=92)
        counts[source.split] += 1
    (out / "SOURCES.md").write_text(sources_table(photos))
    return counts


def sources_table(photos: tuple[PhotoSource, ...] = PHOTOS) -> str:
    """A Markdown table of every photo: split, name, package, author, licence."""
    rows = ["| split | photo | package | author | licence |", "|---|---|---|---|---|"]
    rows += [f"| {s.split} | {s.name} | {s.package.replace('python:', 'pip: ')} | {s.author} | {s.licence} |"
             for s in photos]
    return "\n".join(rows) + "\n"


def photo_files(folder: Path) -> list[Path]:
    """The image files of a photo folder, sorted (the order decides which photo a seed draws)."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not files:
        raise ValueError(f"no photos (.jpg/.png/.webp) in {folder}; run python -m train.photos --out DIR first")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Collect the background photos from installed packages")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-side", type=int, default=MAX_SIDE)
    args = parser.parse_args(argv)
    try:
        counts = collect(args.out, args.max_side)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {counts['train']} training and {counts['heldout']} held-out photos to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
