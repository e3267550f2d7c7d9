"""The multi-task demo suite: eight label spaces, deterministic balanced samples whose labels are visible,
encoder-only fine-tuning and datasets on disk."""

import colorsys
import math
from collections import Counter

import numpy as np
import pytest
import torch

from dawin.inputs import models
from dawin.inputs.datasets import load_dataset
from dawin.demo import tasks, train

ARCH = "dawin-tiny-rn"


def _arrays(name: str, n: int, seed: int = 0, split: str = "test"):
    """Images as float arrays in [0, 1] (H, W, 3) and their labels."""
    pairs = list(tasks.sample(name, n, seed, split))
    return [np.asarray(im, dtype=np.float32) / 255.0 for im, _ in pairs], [y for _, y in pairs]


def _foreground(img: np.ndarray, thresh: float = 0.15) -> np.ndarray:
    """Pixels that differ from the (flat) background, estimated as the median colour of the border."""
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg = np.median(border, axis=0)
    return np.abs(img - bg).max(axis=-1) > thresh


def test_eight_tasks_with_distinct_word_class_names(tiny_clip):
    assert len(tasks.MULTITASKS) == 8
    assert list(tasks.MULTITASKS) == sorted(tasks.MULTITASKS)
    names = [c for t in tasks.MULTITASKS.values() for c in t.classes]
    assert len(names) == len(set(names)), "a class name means one thing in the union of label spaces"
    for key, t in tasks.MULTITASKS.items():
        assert t.name == key and 3 <= len(t.classes) <= 10
        assert all(c.isalpha() and c.islower() for c in t.classes)
        assert t.templates and all("{c}" in tpl for tpl in t.templates)
    head = models.zeroshot_head(tiny_clip, ARCH, tasks.MULTITASKS["colour"].classes, tasks.MULTITASKS["colour"].templates)
    assert head.shape == (6, 64)


@pytest.mark.parametrize("name", sorted(tasks.MULTITASKS))
def test_samples_are_deterministic_balanced_and_split_dependent(name):
    a = [(np.asarray(im).tobytes(), y) for im, y in tasks.sample(name, 10, seed=3, split="test")]
    b = [(np.asarray(im).tobytes(), y) for im, y in tasks.sample(tasks.MULTITASKS[name], 10, seed=3, split="test")]
    c = [np.asarray(im).tobytes() for im, _ in tasks.sample(name, 10, seed=3, split="train")]
    assert a == b
    assert not any(x == y for (x, _), y in zip(a, c))
    im = next(tasks.sample(name, 1, 0))[0]
    assert im.size == (32, 32) and im.mode == "RGB"
    n_cls = len(tasks.MULTITASKS[name].classes)
    counts = Counter(y for _, y in tasks.sample(name, 3 * n_cls + 1, seed=0, split="val"))
    assert set(counts) == set(range(n_cls)) and max(counts.values()) - min(counts.values()) <= 1


def test_colour_label_is_the_object_hue():
    imgs, ys = _arrays("colour", 60)
    hues = (0.0, 0.15, 0.33, 0.5, 0.64, 0.8)  # red, yellow, green, cyan, blue, purple
    for img, y in zip(imgs, ys):
        hsv = np.array([colorsys.rgb_to_hsv(*p) for p in img.reshape(-1, 3)])
        vivid = hsv[(hsv[:, 1] > 0.6) & (hsv[:, 2] > 0.6), 0]
        mean = np.angle(np.exp(2j * np.pi * vivid).mean()) / (2 * np.pi) % 1.0  # circular mean hue
        dist = [min(abs(mean - h), 1 - abs(mean - h)) for h in hues]
        assert int(np.argmin(dist)) == y


def test_scene_label_is_the_background_colour():
    # nearest class mean of the border colour, fitted on train, classifies test almost perfectly
    tr, ytr = _arrays("scene", 60, split="train")
    te, yte = _arrays("scene", 60, split="test")

    def border(img):
        return np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]).mean(0)

    means = np.stack([np.mean([border(i) for i, y in zip(tr, ytr) if y == k], 0) for k in range(6)])
    pred = [int(np.argmin(((means - border(i)) ** 2).sum(1))) for i in te]
    assert np.mean(np.array(pred) == np.array(yte)) > 0.95


def test_position_label_is_where_the_object_is():
    imgs, ys = _arrays("position", 40)
    for img, y in zip(imgs, ys):
        rows, cols = np.nonzero(_foreground(img))
        cy, cx = rows.mean() / 32 - 0.5, cols.mean() / 32 - 0.5
        side = ("top", "bottom", "left", "right")[y]
        expected = {"top": -cy, "bottom": cy, "left": -cx, "right": cx}[side]
        assert expected > 0.1 and expected > max(abs(cx), abs(cy)) - 1e-6


def test_count_label_is_the_amount_of_object():
    imgs, ys = _arrays("count", 80)
    area = np.array([_foreground(i).mean() for i in imgs])
    per_class = [area[np.array(ys) == k].mean() for k in range(4)]
    assert all(a < b for a, b in zip(per_class, per_class[1:]))


def test_direction_label_is_where_the_arrow_head_is():
    # along the arrow's axis, the widest cross-section (the head's base, 1.4 r against the shaft's 0.56 r)
    # lies in the half of the bounding box the arrow points to
    imgs, ys = _arrays("direction", 40)
    classes = tasks.MULTITASKS["direction"].classes
    for img, y in zip(imgs, ys):
        fg = _foreground(img)
        along = fg if classes[y] in ("east", "west") else fg.T  # the axis runs along columns
        widths = along.sum(0)
        cols = np.nonzero(widths)[0]
        mid = (cols.min() + cols.max()) / 2
        idx = np.arange(len(widths))
        head_high = widths[idx > mid].max() > widths[idx < mid].max()
        assert head_high == (classes[y] in ("east", "south"))


def test_texture_plain_has_least_high_frequency_energy():
    imgs, ys = _arrays("texture", 40)
    energy = np.array([np.abs(np.diff(i, axis=0)).mean() + np.abs(np.diff(i, axis=1)).mean() for i in imgs])
    plain = tasks.MULTITASKS["texture"].classes.index("plain")
    ys = np.array(ys)
    assert energy[ys == plain].max() < min(energy[ys == k].min() for k in range(4) if k != plain)


def test_finetune_expert_freezes_the_head_and_follows_task_vectors_schedule(monkeypatch):
    """task_vectors' recipe: the head frozen, exactly `steps` AdamW steps (batches wrap around the data), the
    learning rate warmed up linearly and then cosine-decayed, gradients clipped to norm 1."""
    task = tasks.MULTITASKS["round"]
    arch = "dawin-tiny-vit"
    clip = train.seeded_clip(arch, 0)
    tf = models.preprocess(clip)
    pairs = list(tasks.sample(task, 12, 0, "train"))
    x, y = torch.stack([tf(im) for im, _ in pairs]), torch.tensor([lab for _, lab in pairs])
    clf = models.ImageClassifier.from_clip(clip, arch, models.zeroshot_head(clip, arch, task.classes, task.templates))
    head0 = {k: v.clone() for k, v in clf.head.state_dict().items()}
    tower0 = {k: v.clone() for k, v in clf.visual.state_dict().items()}
    lrs, norms = [], []
    step = torch.optim.AdamW.step

    def spy(self, *a, **kw):
        lrs.append(self.param_groups[0]["lr"])
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    out = train.finetune_expert(clf, x, y, steps=5, batch_size=8, lr=1e-3, warmup=2, seed=0)  # 12 images: 2 batches/epoch
    assert out is clf and not clf.training
    assert all(torch.equal(head0[k], v) for k, v in clf.head.state_dict().items())
    assert not any(p.requires_grad for p in clf.head.parameters())
    assert any(not torch.equal(tower0[k], v) for k, v in clf.visual.state_dict().items())
    expected = [5e-4, 1e-3, *(0.5 * 1e-3 * (1 + math.cos(math.pi * (s - 2) / 3)) for s in (2, 3, 4))]
    assert lrs == pytest.approx(expected)
    assert max(norms) <= 1.0 + 1e-5


def test_written_task_dataset_loads_with_its_class_names(tmp_path):
    root = tmp_path / "count" / "test"
    tasks.write_task_dataset(root, "count", "test", 9, seed=0)
    ds = load_dataset(root)
    task = tasks.MULTITASKS["count"]
    assert ds.name == "count"
    assert ds.classnames == list(task.classes) and ds.templates == list(task.templates)
    assert len(ds) == 9 and ds.labels == [y for _, y in tasks.sample("count", 9, 0, "test")]
    img, label = ds[0]
    assert img.size == (32, 32) and label == ds.labels[0]
    expected = next(tasks.sample("count", 9, 0, "test"))[0]
    assert np.array_equal(np.asarray(img), np.asarray(expected))  # PNG is lossless
    assert not (tmp_path / "count" / "test.partial").exists()


def test_pretraining_captions_name_every_class_of_every_task():
    """The multi-task ViT's pre-training captions (web-like composites, dawin.demo.tasks.captioned) name every class
    of every task, so each task's zero-shot head is built from words the text tower has seen; the content is always
    named, the colour and the background at ``name_rate``."""
    captions = [c for _, c in tasks.captioned(2000, seed=0, name_rate=0.5)]
    words = {w for c in captions for w in c.rstrip(".").split()}
    for task in tasks.MULTITASKS.values():
        assert set(task.classes) <= words, (task.name, set(task.classes) - words)
    assert all(c.startswith("a photo of ") and c.endswith(".") and " a arrow" not in c for c in captions)
    assert [c for _, c in tasks.captioned(50, seed=0, name_rate=0.5)] == captions[:50]  # deterministic in the seed
    never = [c for _, c in tasks.captioned(300, seed=0, name_rate=0.0)]
    colours, backgrounds = set(tasks.MULTITASKS["colour"].classes), (" background", " scene")
    assert not any(colours & set(c.split()) or any(b in c for b in backgrounds) for c in never)
    always = [c for _, c in tasks.captioned(300, seed=0, name_rate=1.0)]
    assert all(any(b in c for b in backgrounds) for c in always)
    content = {*tasks.MULTITASKS["angular"].classes, *tasks.MULTITASKS["round"].classes, "things", "shape", "arrow"}
    assert all(content & set(c.rstrip(".").split()) for c in never)
