"""Eight synthetic tasks for the multi-task merging demo: each asks a different question about a rendered image.

They mirror the paper's eight tasks (task arithmetic's SUN397, Cars, RESISC45, EuroSAT, SVHN, GTSRB, MNIST,
DTD) loosely: every task has its own label space of 3-10 classes whose names are plain words, so each has a
zero-shot head built from prompts (:func:`dawin.inputs.models.zeroshot_head`). In every image only the task's own
factor depends on the label; everything else (shape, colours, position, ...) is drawn at random, so an
expert of one task learns nothing about the others' labels.

==============  ==========  ==================================================================
task            mirrors     label = ...
==============  ==========  ==================================================================
``angular``     Cars        which of six angular shapes is drawn
``colour``      EuroSAT     the object's hue (on a greyish background)
``count``       SVHN        how many small objects there are (one to four)
``direction``   GTSRB       where an arrow points (compass words)
``position``    RESISC45    where a small object sits (top, bottom, left, right)
``round``       MNIST       which of four round shapes is drawn
``scene``       SUN397      the background's palette, named after a scene (sky, forest, ...)
``texture``     DTD         the background's pattern (striped, dotted, checkered, plain)
==============  ==========  ==================================================================

Class names are distinct across tasks, so a word never means two things in the union of label spaces.
Images are built with the drawing primitives of :mod:`dawin.demo.synth` and are a pure function of
(task, seed, split).
"""

from __future__ import annotations

import math
import os
import shutil
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..inputs.datasets import write_dataset
from .synth import CANVAS, hsv_rgb, shape_mask, to_image

# paints the canvas-sized float RGB image (values in [0, 1], before noise) of label y
Painter = Callable[[int, np.random.Generator], np.ndarray]

NOISE = 0.03  # pixel noise std, as mild as the demo's ID photos


@dataclass(frozen=True)
class MultiTask:
    """One task of the multi-task suite: a label space, its prompt templates and how images are painted."""

    name: str
    classes: tuple[str, ...]
    templates: tuple[str, ...]  # ``str.format`` patterns with the field ``{c}`` (as zeroshot_head expects)
    mirrors: str  # the paper's task it stands in for (documentation only)
    paint: Painter = field(repr=False, compare=False)


# --- colour and compositing helpers ---------------------------------------------------------------------


def _flat(rgb: np.ndarray) -> np.ndarray:
    return np.broadcast_to(rgb, (CANVAS, CANVAS, 3)).copy()


def _paste(img: np.ndarray, mask: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    return img * (1 - mask[..., None]) + rgb * mask[..., None]


def _contrasting(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Background and object colours of random hues whose values differ clearly.

    The value gap keeps the object's outline visible whatever the hues, so shape, count and position
    never depend on colour luck.
    """
    bg_v = rng.uniform(0.25, 0.9)
    gap = rng.uniform(0.35, 0.6)
    fg_v = float(np.clip(bg_v - gap if bg_v > 0.575 else bg_v + gap, 0.05, 1.0))
    bg = hsv_rgb(rng.random(), rng.uniform(0.2, 0.8), bg_v)
    fg = hsv_rgb(rng.random(), rng.uniform(0.3, 1.0), fg_v)
    return bg, fg


# compact shapes: small copies stay recognisable as separate blobs (count, position, nuisance objects)
_COMPACT = ("circle", "square", "triangle", "star", "heart", "diamond", "hexagon")


def _one_object(rng: np.random.Generator, scale: tuple[float, float], shift: float) -> np.ndarray:
    """Mask of a random compact shape (a nuisance object) of radius ``scale`` x half the canvas."""
    r = rng.uniform(*scale) * CANVAS / 2
    cx, cy = CANVAS / 2 + rng.uniform(-shift, shift, 2) * CANVAS
    return shape_mask(str(rng.choice(_COMPACT)), cx, cy, r, rng.uniform(-20, 20))


# --- painters: one per task family ----------------------------------------------------------------------


def _centred_mask(shape: str, angle: float, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """A large ``shape`` near the centre, turned ``angle`` degrees counter-clockwise, plus up to ``jitter``."""
    r = rng.uniform(0.6, 0.85) * CANVAS / 2
    cx, cy = CANVAS / 2 + rng.uniform(-0.08, 0.08, 2) * CANVAS
    return shape_mask(shape, cx, cy, r, angle + rng.uniform(-jitter, jitter))


def _shape_painter(classes: tuple[str, ...], rotation: float) -> Painter:
    """Label = the shape drawn (a key of synth.DRAWERS)."""

    def paint(y: int, rng: np.random.Generator) -> np.ndarray:
        bg, fg = _contrasting(rng)
        # rotation stays small: a square turned by 45 degrees would be a diamond
        return _paste(_flat(bg), _centred_mask(classes[y], 0.0, rotation, rng), fg)

    return paint


def _colour_painter(hues: tuple[float, ...]) -> Painter:
    """Label = the object's hue; the background is greyish and dark so the hue is the only colour."""

    def paint(y: int, rng: np.random.Generator) -> np.ndarray:
        bg = hsv_rgb(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.1, 0.5))
        fg = hsv_rgb(hues[y] + rng.normal(0, 0.015), rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0))
        return _paste(_flat(bg), _one_object(rng, (0.5, 0.8), 0.12), fg)

    return paint


def _count_mask(k: int, rng: np.random.Generator) -> np.ndarray:
    """Mask of ``k`` small compact objects (at most four), one per randomly chosen quadrant.

    One object per quadrant, jittered within it, never overlaps and needs no rejection sampling (which
    can paint itself into a corner where no further object fits).
    """
    mask = np.zeros((CANVAS, CANVAS), np.float32)
    half = CANVAS / 2
    for q in rng.permutation(4)[:k]:
        r = rng.uniform(0.1, 0.15) * CANVAS
        room = half / 2 - r - 1  # how far the centre may move and keep the object in its quadrant
        cx, cy = (q % 2 + 0.5) * half + rng.uniform(-room, room), (q // 2 + 0.5) * half + rng.uniform(-room, room)
        mask = np.maximum(mask, shape_mask(str(rng.choice(_COMPACT)), cx, cy, r, rng.uniform(-20, 20)))
    return mask


def _count_painter() -> Painter:
    """Label y = y + 1 small objects (at most four): :func:`_count_mask`."""

    def paint(y: int, rng: np.random.Generator) -> np.ndarray:
        bg, fg = _contrasting(rng)
        return _paste(_flat(bg), _count_mask(y + 1, rng), fg)

    return paint


def _direction_painter(angles: tuple[float, ...]) -> Painter:
    """Label = where an arrow points; synth's arrow points east and PIL rotates counter-clockwise."""

    def paint(y: int, rng: np.random.Generator) -> np.ndarray:
        bg, fg = _contrasting(rng)
        return _paste(_flat(bg), _centred_mask("arrow", angles[y], 10, rng), fg)

    return paint


def _side_mask(side: str, rng: np.random.Generator) -> np.ndarray:
    """A small compact object near one side of the canvas (top, bottom, left or right)."""
    near = rng.uniform(0.17, 0.3) * CANVAS  # distance of the centre from its side
    along = rng.uniform(0.35, 0.65) * CANVAS  # the other coordinate stays central: no corner is ambiguous
    cx, cy = {"top": (along, near), "bottom": (along, CANVAS - near),
              "left": (near, along), "right": (CANVAS - near, along)}[side]
    r = rng.uniform(0.1, 0.15) * CANVAS
    return shape_mask(str(rng.choice(_COMPACT)), cx, cy, r, rng.uniform(-20, 20))


def _position_painter(classes: tuple[str, ...]) -> Painter:
    """Label = the side of the canvas a small object sits near: :func:`_side_mask`."""

    def paint(y: int, rng: np.random.Generator) -> np.ndarray:
        bg, fg = _contrasting(rng)
        return _paste(_flat(bg), _side_mask(classes[y], rng), fg)

    return paint


def _scene_background(hsv: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """A scene's background: its (hue, saturation, value), jittered, under a gentle vertical gradient."""
    h, s, v = hsv
    bg = hsv_rgb(h + rng.normal(0, 0.015), np.clip(s + rng.uniform(-0.08, 0.08), 0, 1),
                 np.clip(v + rng.uniform(-0.06, 0.06), 0, 1))
    yy = np.linspace(-0.5, 0.5, CANVAS)[:, None, None]
    return _flat(bg) * (1.0 + 0.15 * yy)  # like light over a scene


def _scene_painter(palette: tuple[tuple[float, float, float], ...]) -> Painter:
    """Label = the background colour, one (hue, saturation, value) per scene word, jittered."""

    def paint(y: int, rng: np.random.Generator) -> np.ndarray:
        img = _scene_background(palette[y], rng)
        fg = hsv_rgb(rng.random(), rng.uniform(0.0, 1.0), rng.uniform(0.1, 1.0))  # any object colour
        return _paste(img, _one_object(rng, (0.3, 0.5), 0.15), fg)

    return paint


def _pattern(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Binary mask (canvas) of a background pattern; periods are 5-8 pixels after downsampling to 32."""
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32)
    if kind == "striped":
        p, theta = rng.uniform(10, 16), rng.uniform(0, math.pi)
        u = xx * math.cos(theta) + yy * math.sin(theta)
        return ((u / p + rng.random()) % 1.0 < 0.5).astype(np.float32)
    if kind == "dotted":
        p = rng.uniform(11, 16)
        dx = (xx + rng.uniform(0, p)) % p - p / 2
        dy = (yy + rng.uniform(0, p)) % p - p / 2
        return (dx**2 + dy**2 < (0.28 * p) ** 2).astype(np.float32)
    if kind == "checkered":
        c = rng.uniform(6, 9)
        return ((np.floor((xx + rng.uniform(0, c)) / c) + np.floor((yy + rng.uniform(0, c)) / c)) % 2).astype(np.float32)
    if kind == "plain":
        return np.zeros((CANVAS, CANVAS), np.float32)
    raise ValueError(f"unknown pattern {kind!r}")


def _texture_painter(classes: tuple[str, ...]) -> Painter:
    """Label = the background pattern, in two contrasting colours, behind a random object."""

    def paint(y: int, rng: np.random.Generator) -> np.ndarray:
        base, ink = _contrasting(rng)
        img = _paste(_flat(base), _pattern(classes[y], rng), ink)
        _, fg = _contrasting(rng)
        return _paste(img, _one_object(rng, (0.3, 0.45), 0.15), fg)

    return paint


# --- the registry ----------------------------------------------------------------------------------------

_SHAPE_TEMPLATES = ("a photo of a {c}.", "a {c} shape.", "a drawing of a {c}.")
_ANGULAR = ("square", "triangle", "star", "cross", "diamond")
_ROUND = ("circle", "ring", "crescent", "heart")
_COLOURS = ("red", "yellow", "green", "cyan", "blue", "purple")
_HUES = (0.0, 0.15, 0.33, 0.5, 0.64, 0.8)  # of _COLOURS
_COMPASS = ("north", "east", "south", "west")
_ANGLES = (90.0, 0.0, 270.0, 180.0)  # of _COMPASS: degrees counter-clockwise from east
_SIDES = ("top", "bottom", "left", "right")
_SCENES = ("sky", "forest", "desert", "night", "snow", "sunset")
_PALETTE = ((0.57, 0.45, 0.95), (0.33, 0.8, 0.4), (0.11, 0.45, 0.85), (0.66, 0.7, 0.15), (0.6, 0.03, 0.97),
            (0.04, 0.85, 0.9))  # (hue, saturation, value) of _SCENES
_TEXTURES = ("striped", "dotted", "checkered", "plain")

MULTITASKS: dict[str, MultiTask] = {
    t.name: t
    for t in sorted(
        (
            MultiTask("angular", _ANGULAR, _SHAPE_TEMPLATES, "Cars", _shape_painter(_ANGULAR, 8)),
            MultiTask("colour", _COLOURS, ("a photo of a {c} object.", "a {c} shape.", "something {c}."), "EuroSAT",
                      _colour_painter(_HUES)),
            MultiTask("count", ("one", "two", "three", "four"),
                      ("the number {c}.", "a count of {c}.", "{c} things in a photo."), "SVHN", _count_painter()),
            MultiTask("direction", _COMPASS, ("an arrow pointing {c}.", "a sign pointing {c}.", "an arrow heading {c}."),
                      "GTSRB", _direction_painter(_ANGLES)),
            MultiTask("position", _SIDES,
                      ("an object at the {c}.", "a shape at the {c} of the picture.", "a photo with something at the {c}."),
                      "RESISC45", _position_painter(_SIDES)),
            MultiTask("round", _ROUND, _SHAPE_TEMPLATES, "MNIST", _shape_painter(_ROUND, 15)),
            MultiTask("scene", _SCENES, ("a photo of a {c} scene.", "an object in a {c} scene.", "a {c} background."),
                      "SUN397", _scene_painter(_PALETTE)),
            MultiTask("texture", _TEXTURES, ("a {c} pattern.", "a photo of a {c} texture.", "a {c} background."), "DTD",
                      _texture_painter(_TEXTURES)),
        ),
        key=lambda t: t.name,
    )
}


# --- pre-training: captioned composites that name the tasks' factors, as web captions do -----------------

CONTENTS = ("shape", "count", "position", "direction")
BACKGROUNDS = ("scene", "texture", "plain")


def _caption_colour(img: np.ndarray, hue: int | None, rng: np.random.Generator) -> np.ndarray:
    """The object colour: the colour task's hue ``hue``, vivid, or (None) any hue whose value stands out from the
    background's mean."""
    if hue is not None:
        return hsv_rgb(_HUES[hue] + rng.normal(0, 0.015), rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0))
    bg_v = float(img.max(-1).mean())
    return hsv_rgb(rng.random(), rng.uniform(0.2, 1.0), bg_v - 0.5 if bg_v > 0.55 else bg_v + 0.5)


def composite(rng: np.random.Generator, name_rate: float) -> tuple[np.ndarray, str]:
    """One pre-training image (canvas-sized float RGB, before noise) and its caption.

    The image combines a background (a scene's palette, a texture, or a plain colour), an object colour (one of
    the colour task's hues, or any) and a content (:data:`CONTENTS`: one shape of the shape families, one to
    four things, a thing at a side, an arrow pointing somewhere): every factor the eight tasks ask about, in
    combinations no task shows. The caption names the content, and the colour and the background each with
    probability ``name_rate`` (a web caption names some of what is in a picture).
    """
    named = lambda: rng.random() < name_rate  # noqa: E731
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    if background == "scene":
        k = int(rng.integers(len(_SCENES)))
        img, where = _scene_background(_PALETTE[k], rng), f" in a {_SCENES[k]} scene"
    elif background == "texture":
        k = int(rng.integers(len(_TEXTURES) - 1))  # "plain" is the third kind of background
        base, ink = _contrasting(rng)
        img, where = _paste(_flat(base), _pattern(_TEXTURES[k], rng), ink), f" on a {_TEXTURES[k]} background"
    else:
        img, where = _flat(_contrasting(rng)[0]), " on a plain background"
    hue = int(rng.integers(len(_COLOURS))) if rng.random() < 0.5 else None
    colour = f"{_COLOURS[hue]} " if hue is not None and named() else ""
    content = CONTENTS[rng.integers(len(CONTENTS))]
    if content == "shape":
        shapes = _ANGULAR + _ROUND
        k = int(rng.integers(len(shapes)))
        mask = _centred_mask(shapes[k], 0.0, 8, rng)
        what = f"a {colour}{shapes[k]}"
    elif content == "count":
        k = int(rng.integers(4))
        mask = _count_mask(k + 1, rng)
        what = f"{('one', 'two', 'three', 'four')[k]} {colour}things"
    elif content == "position":
        k = int(rng.integers(len(_SIDES)))
        mask = _side_mask(_SIDES[k], rng)
        what = f"a {colour}shape at the {_SIDES[k]}"
    else:
        k = int(rng.integers(len(_COMPASS)))
        mask = _centred_mask("arrow", _ANGLES[k], 10, rng)
        what = f"a {colour}arrow pointing {_COMPASS[k]}"
    img = _paste(img, mask, _caption_colour(img, hue, rng))
    what = what.replace("a arrow", "an arrow")  # the one noun of these captions after "a" that takes "an"
    return img, f"a photo of {what}{where if named() else ''}."


def captioned(n: int, seed: int, name_rate: float, size: int = 32) -> Iterator[tuple[Image.Image, str]]:
    """``n`` pre-training images (:func:`composite`) with their captions, deterministic in (seed, name_rate)."""
    rng = np.random.default_rng([seed, zlib.crc32(b"pretrain")])
    for _ in range(n):
        img, caption = composite(rng, name_rate)
        yield to_image(img + rng.normal(0, NOISE, img.shape), size), caption


def sample(task: MultiTask | str, n: int, seed: int, split: str = "test", size: int = 32) -> Iterator[tuple[Image.Image, int]]:
    """Yield (image, label) for ``n`` images with balanced labels (counts differ by at most one).

    Deterministic in (seed, task, split), seeded like :func:`dawin.demo.synth.sample_split`: every split of
    every task draws from its own stream.
    """
    task = MULTITASKS[task] if isinstance(task, str) else task
    rng = np.random.default_rng([seed, *(zlib.crc32(s.encode()) for s in (task.name, split))])
    labels = np.arange(n) % len(task.classes)
    rng.shuffle(labels)
    for y in labels:
        img = task.paint(int(y), rng)
        img = img + rng.normal(0, NOISE, img.shape)
        yield to_image(img, size), int(y)


def write_task_dataset(root: str | Path, task_name: str, split: str, n: int, seed: int) -> None:
    """Render ``n`` images of task ``task_name`` into ``root``/<class>/<i>.png plus index and metadata.

    Same layout and atomicity as :func:`dawin.demo.build.write_demo_dataset`: written to a temporary
    sibling and renamed at the end, so an interrupted run leaves nothing that looks complete.
    """
    task = MULTITASKS[task_name]
    root = Path(root)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    items = []
    for i, (img, y) in enumerate(sample(task, n, seed, split)):
        rel = f"{task.classes[y]}/{i:06d}.png"
        (tmp / task.classes[y]).mkdir(parents=True, exist_ok=True)
        img.save(tmp / rel, optimize=False)
        items.append((rel, y))
    write_dataset(tmp, task.name, task.classes, task.templates, items)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
