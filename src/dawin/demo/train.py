"""Training of the demo suite's models: contrastive "pre-training" of a tiny CLIP and end-to-end fine-tuning.

Both run on a CPU (two threads) in about a minute and a half. They exist so that the demo's zero-shot and fine-tuned models
have the relationship the paper starts from; nothing here is part of DaWin itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dawin.inputs.openclip import open_clip  # noqa: I001 - first: open_clip without timm and transformers (see there)

from .synth import Domain, Task, sample_split
from ..inputs.models import ImageClassifier, create_clip, preprocess


def render_tensors(task: Task, domains: Sequence[Domain], n_per_domain: int, seed: int, split: str, transform):
    """Images (N, 3, H, W) after ``transform``, labels and the style word of each image's domain."""
    images, labels, styles = [], [], []
    for dom in domains:
        for img, y in sample_split(task, dom, n_per_domain, seed, split):
            images.append(transform(img))
            labels.append(y)
            styles.append(dom.caption)
    return torch.stack(images), torch.tensor(labels), styles


def seeded_clip(architecture: str, seed: int) -> torch.nn.Module:
    """A randomly initialised CLIP whose initial weights depend only on ``seed`` (not on prior RNG use)."""
    torch.manual_seed(seed)
    return create_clip(architecture)


def _cosine_lr(opt: torch.optim.Optimizer, base: float, step: int, total: int, warmup: int) -> None:
    lr = base * (step + 1) / warmup if step < warmup else base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for g in opt.param_groups:
        g["lr"] = lr


def pretrain_clip(model: torch.nn.Module, architecture: str, task: Task, domains: Sequence[Domain], *, n_per_domain: int,
                  epochs: int, batch_size: int, lr: float, seed: int) -> torch.nn.Module:
    """Contrastive training on images of ``task`` in ``domains`` captioned "a {style} of a {class}." (the robust
    fine-tuning demo's zero-shot model)."""
    torch.manual_seed(seed)
    images, labels, styles = render_tensors(task, domains, n_per_domain, seed, "pretrain", preprocess(model))
    # half the captions name only the object, so the loss cannot be lowered by matching the style alone
    coin = torch.rand(len(labels), generator=torch.Generator().manual_seed(seed)) < 0.5
    captions = [f"a {s} of a {task.classes[y]}." if c else f"a {task.classes[y]}."
                for s, y, c in zip(styles, labels.tolist(), coin.tolist())]
    return contrastive(model, architecture, images, captions, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)


def pretrain_captioned(model: torch.nn.Module, architecture: str, *, n: int, name_rate: float, epochs: int,
                       batch_size: int, lr: float, seed: int) -> torch.nn.Module:
    """Contrastive training on ``n`` captioned composites of the multi-task world (:func:`dawin.demo.tasks.captioned`:
    every factor the eight tasks ask about, colour and background named with probability ``name_rate``)."""
    from .tasks import captioned

    torch.manual_seed(seed)
    transform = preprocess(model)
    images, captions = [], []
    for img, caption in captioned(n, seed, name_rate):
        images.append(transform(img))
        captions.append(caption)
    return contrastive(model, architecture, torch.stack(images), captions, epochs=epochs, batch_size=batch_size, lr=lr,
                       seed=seed)


def contrastive(model: torch.nn.Module, architecture: str, images: torch.Tensor, captions: Sequence[str], *, epochs: int,
                batch_size: int, lr: float, seed: int) -> torch.nn.Module:
    """CLIP's contrastive loss (InfoNCE, both directions) over (image, caption) pairs, AdamW, cosine schedule."""
    tokens = open_clip.get_tokenizer(architecture)(list(captions))
    # as in CLIP, no weight decay on embeddings, gains, biases and the logit scale (most token embeddings
    # are never used here and would only be shrunk towards zero)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embedding" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    steps, total = 0, epochs * math.ceil(len(images) / batch_size)
    model.train()
    for _ in tqdm(range(epochs), desc=f"pre-train {architecture}"):
        for idx in torch.randperm(len(images), generator=gen).split(batch_size):
            # a long warm-up (and a moderate lr): early full-rate Adam steps lock the text tower onto the
            # style words, which the random image tower already tells apart, and map every class name to
            # one point; it then takes most of the budget to recover the shapes
            _cosine_lr(opt, lr, steps, total, warmup=max(1, int(0.15 * total)))
            img = F.normalize(model.encode_image(images[idx]), dim=-1)
            txt = F.normalize(model.encode_text(tokens[idx]), dim=-1)
            logits = model.logit_scale.exp() * img @ txt.T
            # identical captions in one batch are true positives: use soft targets over them
            same = (tokens[idx][:, None, :] == tokens[idx][None, :, :]).all(-1).float()
            target = same / same.sum(1, keepdim=True)
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            steps += 1
    return model.eval()


def _fit(clf: ImageClassifier, params, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, batch_size: int,
         lr: float, seed: int, desc: str) -> ImageClassifier:
    """Cross-entropy training of ``params`` of ``clf`` with AdamW (weight decay 0.1) and a cosine schedule."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.1)
    gen = torch.Generator().manual_seed(seed)
    steps, total = 0, epochs * math.ceil(len(images) / batch_size)
    clf.train()
    for _ in tqdm(range(epochs), desc=desc):
        for idx in torch.randperm(len(images), generator=gen).split(batch_size):
            _cosine_lr(opt, lr, steps, total, warmup=max(1, total // 20))
            loss = F.cross_entropy(clf(images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    return clf.eval()


def finetune_classifier(clf: ImageClassifier, images: torch.Tensor, labels: torch.Tensor, *, epochs: int,
                        batch_size: int, lr: float, seed: int) -> ImageClassifier:
    """End-to-end fine-tuning (tower and head) with cross-entropy, AdamW and a cosine schedule."""
    return _fit(clf, clf.parameters(), images, labels, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                desc="fine-tune")


def finetune_expert(clf: ImageClassifier, images: torch.Tensor, labels: torch.Tensor, *, steps: int, batch_size: int,
                    lr: float, warmup: int, seed: int) -> ImageClassifier:
    """A task expert as task_vectors fine-tunes one: the image tower only, its task's zero-shot head frozen.

    task_vectors' ``src/finetune.py`` (mlfoundations/task_vectors@826a64c): the parameters that require a gradient
    (the head's do not), AdamW with weight decay 0.1 (``src/args.py``), a cosine schedule after a linear warm-up of
    ``warmup_length`` steps, the gradient norm clipped to 1.0, cross-entropy, a fixed budget (about 2,000 steps at
    lr 1e-5 and batch 128 there; the demo's ``steps``, ``lr`` and ``batch_size`` are sized for its tiny tower).
    Batches are drawn from seeded permutations of the training images, one after another, until ``steps``.

    The head gets ``requires_grad = False`` (and keeps it), so every expert keeps the head it started from and
    task vectors are differences of towers alone.
    """
    torch.manual_seed(seed)
    clf.head.requires_grad_(False)
    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.1)
    gen = torch.Generator().manual_seed(seed)
    batches = iter(())
    clf.train()
    for step in tqdm(range(steps), desc="fine-tune expert"):
        idx = next(batches, None)
        if idx is None:
            batches = iter(torch.randperm(len(images), generator=gen).split(batch_size))
            idx = next(batches)
        _cosine_lr(opt, lr, step, steps, warmup=warmup)
        loss = F.cross_entropy(clf(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return clf.eval()
