"""Deterministic synthetic images whose classes read as text, rendered in several styles.

A *task* is a list of class names, each with a drawer that paints the class's object as a mask. A
*style* renders masks into RGB images (photo, cartoon rendition, sketch, ...). A *domain* is a
style plus nuisance parameters (object scale, rotation, clutter, background and whether the background
colour correlates with the class). The robust fine-tuning demo uses one task (shapes) and six
domains mirroring ImageNet and its shifts; the multi-task suite can define further tasks with the same
drawers and styles. Everything is a pure function of (class, domain, seed).
"""

from __future__ import annotations

import colorsys
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CANVAS = 64  # drawing resolution; images are downsampled to the model's input size

Drawer = Callable[[ImageDraw.ImageDraw, float, float, float], None]


def _poly(n: int, r: float, cx: float, cy: float, phase: float = -math.pi / 2, inner: float | None = None):
    pts = []
    for i in range(n * (2 if inner else 1)):
        rad = r if (inner is None or i % 2 == 0) else r * inner
        a = phase + 2 * math.pi * i / (n * (2 if inner else 1))
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _circle(d, cx, cy, r):
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)


def _square(d, cx, cy, r):
    s = r * 0.85
    d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=255)


def _triangle(d, cx, cy, r):
    d.polygon(_poly(3, r, cx, cy + r * 0.15), fill=255)


def _star(d, cx, cy, r):
    d.polygon(_poly(5, r, cx, cy, inner=0.42), fill=255)


def _cross(d, cx, cy, r):
    w = r * 0.32
    d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=255)
    d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=255)


def _heart(d, cx, cy, r):
    q = r * 0.5
    d.ellipse([cx - r, cy - r * 0.7, cx, cy + r * 0.3 - 0.0], fill=255)
    d.ellipse([cx, cy - r * 0.7, cx + r, cy + r * 0.3], fill=255)
    d.polygon([(cx - r * 0.97, cy - q * 0.1), (cx + r * 0.97, cy - q * 0.1), (cx, cy + r)], fill=255)


def _diamond(d, cx, cy, r):
    d.polygon([(cx, cy - r), (cx + r * 0.65, cy), (cx, cy + r), (cx - r * 0.65, cy)], fill=255)


def _ring(d, cx, cy, r):
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    d.ellipse([cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55], fill=0)


def _arrow(d, cx, cy, r):
    w = r * 0.28
    d.rectangle([cx - r, cy - w, cx + r * 0.1, cy + w], fill=255)
    d.polygon([(cx + r * 0.1, cy - r * 0.7), (cx + r, cy), (cx + r * 0.1, cy + r * 0.7)], fill=255)


def _hexagon(d, cx, cy, r):
    d.polygon(_poly(6, r, cx, cy, phase=0.0), fill=255)


def _crescent(d, cx, cy, r):
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    d.ellipse([cx - r * 0.45, cy - r * 1.05, cx + r * 1.35, cy + r * 0.75], fill=0)


def _bar(d, cx, cy, r):
    d.rectangle([cx - r, cy - r * 0.3, cx + r, cy + r * 0.3], fill=255)


DRAWERS: dict[str, Drawer] = {
    "circle": _circle, "square": _square, "triangle": _triangle, "star": _star, "cross": _cross,
    "heart": _heart, "diamond": _diamond, "ring": _ring, "arrow": _arrow, "hexagon": _hexagon,
    "crescent": _crescent, "bar": _bar,
}


@dataclass(frozen=True)
class Domain:
    """How images of one domain are rendered; every field is a nuisance, never the label."""

    name: str
    style: str  # photo | cartoon | sketch
    caption: str  # the style word of pre-training captions, e.g. "photo", "cartoon", "sketch"
    scale: tuple[float, float] = (0.55, 0.8)  # object radius as a fraction of half the canvas
    rotation: float = 0.0  # max absolute rotation in degrees
    shift: float = 0.15  # max centre offset as a fraction of the canvas
    clutter: int = 0  # number of distractor blobs
    noise: float = 0.04  # pixel noise std
    contrast: tuple[float, float] = (0.6, 1.0)  # object/background value gap
    context: float = 0.0  # probability that the background hue is the class's own hue (spurious cue)


def class_hue(index: int, n_classes: int) -> float:
    return (index + 0.5) / n_classes


def _mask(cls: str, rng: np.random.Generator, dom: Domain) -> Image.Image:
    m = Image.new("L", (CANVAS, CANVAS), 0)
    r = rng.uniform(*dom.scale) * CANVAS / 2
    cx = CANVAS / 2 + rng.uniform(-dom.shift, dom.shift) * CANVAS
    cy = CANVAS / 2 + rng.uniform(-dom.shift, dom.shift) * CANVAS
    DRAWERS[cls](ImageDraw.Draw(m), cx, cy, r)
    if dom.rotation:
        m = m.rotate(rng.uniform(-dom.rotation, dom.rotation), resample=Image.BILINEAR, center=(cx, cy))
    return m


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def hsv_rgb(h: float, s: float, v: float) -> np.ndarray:
    """RGB float32 triple of an HSV colour (hue wraps around), for callers composing their own images."""
    return _rgb(h, s, v)


def shape_mask(cls: str, cx: float, cy: float, r: float, angle: float = 0.0) -> np.ndarray:
    """Float mask in [0, 1] on the drawing canvas: ``DRAWERS[cls]`` at (cx, cy), radius r, rotated ``angle``
    degrees counter-clockwise about its centre.

    The same drawing and rotation as :func:`render` uses, with the geometry given instead of sampled, so
    other tasks (position, orientation, count, ...) can make the geometry itself the label.
    """
    m = Image.new("L", (CANVAS, CANVAS), 0)
    DRAWERS[cls](ImageDraw.Draw(m), cx, cy, r)
    if angle:
        m = m.rotate(angle, resample=Image.BILINEAR, center=(cx, cy))
    return np.asarray(m, dtype=np.float32) / 255.0


def to_image(img: np.ndarray, size: int = 32) -> Image.Image:
    """A canvas-sized float RGB array in [0, 1] as a ``size`` x ``size`` PIL image (as :func:`render` finishes)."""
    arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB").resize((size, size), Image.BILINEAR)


def render(cls: str, index: int, n_classes: int, dom: Domain, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """One image of class ``cls`` (its position ``index`` among ``n_classes``) in domain ``dom``."""
    mask = np.asarray(_mask(cls, rng, dom), dtype=np.float32) / 255.0
    if dom.style == "sketch":
        edges = np.asarray(_mask_edges(mask), dtype=np.float32)
        img = np.ones((CANVAS, CANVAS, 3), np.float32) * rng.uniform(0.85, 1.0)
        img -= edges[..., None] * rng.uniform(0.6, 0.9)
        img += rng.normal(0, dom.noise, (CANVAS, CANVAS, 1))
    else:
        if rng.random() < dom.context:
            bg_h = class_hue(index, n_classes) + rng.normal(0, 0.02)
        else:
            bg_h = rng.random()
        v_gap = rng.uniform(*dom.contrast)
        fg_h = rng.random()
        if dom.style == "cartoon":
            bg = _rgb(bg_h, rng.uniform(0.0, 0.25), 1.0)
            fg = _rgb(fg_h, 1.0, 1.0)
            img = np.broadcast_to(bg, (CANVAS, CANVAS, 3)).copy()
            outline = np.asarray(_mask_edges(mask, width=3), dtype=np.float32)
            img = img * (1 - mask[..., None]) + fg * mask[..., None]
            img *= 1 - outline[..., None]
        else:  # photo: textured background, shaded object
            bg_v = rng.uniform(0.3, 0.9)
            fg_v = np.clip(bg_v + (v_gap if bg_v < 0.6 else -v_gap) * 0.7, 0.05, 1.0)
            bg = _rgb(bg_h, rng.uniform(0.4, 0.9), bg_v)
            fg = _rgb(fg_h, rng.uniform(0.3, 1.0), fg_v)
            yy, xx = np.mgrid[0:CANVAS, 0:CANVAS] / CANVAS
            f1, f2, ph = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 2 * math.pi)
            # faint stripes, well below the object/background value gap: the object's outline must stay the edge
            texture = 0.04 * np.sin(2 * math.pi * (f1 * xx + f2 * yy) + ph)[..., None]
            shade = (1.0 + 0.25 * (yy - 0.5))[..., None]
            img = (bg + texture) * (1 - mask[..., None]) + fg * shade * mask[..., None]
        for _ in range(dom.clutter):
            other = DRAWERS[rng.choice(list(DRAWERS))]
            m2 = Image.new("L", (CANVAS, CANVAS), 0)
            rr = rng.uniform(0.12, 0.25) * CANVAS / 2
            other(ImageDraw.Draw(m2), rng.uniform(0, CANVAS), rng.uniform(0, CANVAS), rr)
            m2a = np.asarray(m2, dtype=np.float32)[..., None] / 255.0
            img = img * (1 - m2a) + _rgb(rng.random(), rng.uniform(0.3, 1), rng.uniform(0.2, 1)) * m2a
        img = img + rng.normal(0, dom.noise, img.shape)
    arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB").resize((size, size), Image.BILINEAR)


def _mask_edges(mask: np.ndarray, width: int = 3) -> np.ndarray:
    m = Image.fromarray((mask * 255).astype(np.uint8))
    dil = np.asarray(m.filter(ImageFilter.MaxFilter(width)), dtype=np.float32)
    ero = np.asarray(m.filter(ImageFilter.MinFilter(width)), dtype=np.float32)
    return (dil - ero) / 255.0


@dataclass(frozen=True)
class Task:
    """A label space: class names (each a key of DRAWERS) and the prompt templates of its head."""

    name: str
    classes: tuple[str, ...]
    templates: tuple[str, ...] = field(default=("a {style} of a {c}.",))


def sample_split(task: Task, dom: Domain, n: int, seed: int, split: str = "test", size: int = 32):
    """Yield (image, label) for ``n`` images with balanced labels.

    Deterministic in (seed, task, domain, split): every split of every domain draws from its own stream.
    """
    rng = np.random.default_rng([seed, *(zlib.crc32(s.encode()) for s in (task.name, dom.name, split))])
    labels = np.arange(n) % len(task.classes)
    rng.shuffle(labels)
    for y in labels:
        yield render(task.classes[y], int(y), len(task.classes), dom, rng, size), int(y)
