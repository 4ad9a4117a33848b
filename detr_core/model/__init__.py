"""The DETR model itself, official-checkpoint compatible: configuration, backbone, positional
encodings, transformer, the detector, image pre- and post-processing, and the faster inference copy."""
