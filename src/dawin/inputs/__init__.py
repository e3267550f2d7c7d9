"""Inputs: downloads, checkpoints and their conversion, datasets, and the CLIP models built from them."""
