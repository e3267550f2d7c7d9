"""The demo suite's world: its shape task, the ID domain and five shifted domains mirroring the paper's.

| demo domain | mirrors     | what shifts                                                        |
|-------------|-------------|--------------------------------------------------------------------|
| in          | ImageNet    | photos; the background hue often matches the class (a context cue) |
| v2          | ImageNet-V2 | a re-sampled twin of `in`: slightly smaller objects, more noise      |
| r           | ImageNet-R  | cartoon renditions: flat colours, black outlines, pale backgrounds |
| a           | ImageNet-A  | hard photos: small off-centre objects, clutter, low contrast       |
| sketch      | IN-Sketch   | grey line drawings                                                 |
| objectnet   | ObjectNet   | new viewpoints and backgrounds: any rotation, no context cue       |

Pre-training captions span all styles with uncorrelated backgrounds, so the zero-shot model knows every
style; fine-tuning sees only `in` train, where the context cue pays, and forgets some of the rest.
"""

from __future__ import annotations

from .synth import Domain, Task

SHAPES = Task(
    name="shapes",
    classes=("circle", "square", "triangle", "star", "cross", "heart", "diamond", "ring", "arrow", "hexagon"),
    templates=("a photo of a {c}.", "a cartoon of a {c}.", "a sketch of a {c}.", "a drawing of a {c}.", "a {c}."),
)

DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain("in", "photo", "photo", rotation=10, context=0.8),
        Domain("v2", "photo", "photo", scale=(0.5, 0.75), rotation=15, noise=0.07, context=0.7),
        Domain("r", "cartoon", "cartoon", scale=(0.5, 0.85), rotation=25),
        Domain("a", "photo", "photo", scale=(0.35, 0.55), shift=0.22, clutter=3, contrast=(0.3, 0.6), rotation=30),
        Domain("sketch", "sketch", "sketch", rotation=15),
        Domain("objectnet", "photo", "photo", scale=(0.4, 0.85), rotation=180, shift=0.2),
    )
}

# What the tiny CLIP is pre-trained on: every style, wide nuisances, no context cue.
PRETRAIN_DOMAINS: tuple[Domain, ...] = (
    Domain("pre-photo", "photo", "photo", scale=(0.4, 0.85), rotation=45, shift=0.18, contrast=(0.4, 1.0)),
    Domain("pre-cartoon", "cartoon", "cartoon", scale=(0.45, 0.85), rotation=45),
    Domain("pre-sketch", "sketch", "sketch", scale=(0.45, 0.85), rotation=45),
)
