"""The embedded demo suite: a synthetic image world, a tiny CLIP pre-trained on it, and fine-tunes."""
