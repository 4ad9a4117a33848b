"""Data-set analyses of a DETR or DETR-family model (faithfulness of every explanation, query slots, attention
heads), sharded over torchrun processes: `python -m analysis --model M --data D --out OUT`.

A peer of train/: it imports detr_core (and the data readers), detr_core never imports it."""
