"""Seeing inside one forward pass: attention capture hooks, the Inspection result, the one coordinate
module, compact storage of attention maps."""
