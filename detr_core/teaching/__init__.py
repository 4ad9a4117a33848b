"""Analyses for the teaching views: pipeline stages, set prediction, Hungarian matching laid open,
query slots, attention rollout and relevance, head ablation."""
