"""Running models: logit caching, merged-model evaluators, inference-cost profiling."""
