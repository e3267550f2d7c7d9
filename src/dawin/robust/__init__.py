"""The robust fine-tuning baselines: static interpolation and output ensembles, model soups."""
