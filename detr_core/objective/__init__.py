"""DETR's training objective: Hungarian matching and the set criterion."""
