"""Attention probabilities stored as 16-bit fixed point: half the memory of float32, and every row sums to 1.

The encoder's self-attention is the bulk of what one forward pass captures (DETR-R50 at 800x1066:
6 layers x 8 heads x 850 x 850 cells, 139 MB in float32). Softmax outputs lie in [0, 1], so a fixed step
of 1/65535 keeps every value close at every size, where float16 loses up to 1.2e-4 near 1 and bfloat16
far more. Rounding each value on its own leaves a row of 850 values up to ~1e-3 off 1 in sum (half-step
errors add up), so each row is rounded as a whole, by cumulative rounding: with the running sum
X_i = SCALE * (p_0 + ... + p_i) / (row sum), the code of p_i is round(X_i) - round(X_i-1). The codes of a
row then add up to exactly SCALE; each code is within one step of SCALE * p_i / (row sum) (so within
MAX_ERROR, 1.1 steps or 1.7e-5, of p itself); zeros (padded keys) stay exactly zero; no code is negative.
The running sums are integers (fixed point), so it is exact integer arithmetic and one scan per row:
largest-remainder rounding, with the same guarantees, needs a sort of every row and measured ~10x slower.
Views read a row or a column at a time; only those are widened.
"""
from __future__ import annotations

import numpy as np
import torch

SCALE = 65535  # the codes of a row add up to SCALE; a decoded value is code / SCALE
# Worst-case |decoded - p| for a row that sums to 1 within 1.5e-6 (float32 softmax rows do): under one step,
# plus 2^-FRAC of fixed point and the row's own distance from 1 (rows are scaled to sum to exactly 1).
MAX_ERROR = 1.1 / SCALE  # 1.68e-5


def _fixed_point(keys: int) -> tuple[torch.dtype, int]:
    """(integer type, fractional bits) of the running sums. A row's running sum loses under 2^-FRAC of a step
    per key to flooring; up to 8192 keys that stays under a quarter step, so int32 (15 bits, SCALE * 2^15 <
    2^31) is exact enough and half the traffic of int64 (32 bits), which longer rows take."""
    return (torch.int32, 15) if keys <= 8192 else (torch.int64, 32)


def quantize(weights: torch.Tensor) -> np.ndarray:
    """Probability rows [..., S] (non-negative) -> uint16 codes [..., S] whose every row adds up to SCALE.

    Each row is scaled to sum to exactly 1 first (a softmax row in float32 is off by ~1e-7); a row of zeros
    stays zeros. Decoded rows (code / SCALE as float32) sum to 1 within 2e-7 in float64 (within 1e-6 with
    numpy's float32 sum at 850 keys). Vectorised over rows: about 2.3x the cost of rounding each value alone.
    """
    integer, frac = _fixed_point(weights.shape[-1])
    p = weights.float()
    total = p.sum(-1, keepdim=True)  # [..., 1]
    factor = torch.where(total > 0, float(SCALE << frac) / total, 0.0)  # [..., 1]
    running = p.mul(factor).to(integer)  # [..., S]: SCALE * p / total in units of 2^-frac, floored (p >= 0)
    running[..., 0] += 1 << (frac - 1)  # one half, carried into every running sum: the shift below rounds
    running.cumsum_(-1).bitwise_right_shift_(frac)  # [..., S]: round(X_i), X_i = SCALE * (p_0 + .. + p_i) / total
    codes = torch.empty(weights.shape, dtype=torch.uint16)
    codes[..., 0] = running[..., 0]
    torch.sub(running[..., 1:], running[..., :-1], out=codes[..., 1:])  # round(X_i) - round(X_i-1), in 0..SCALE
    return codes.numpy()


class QuantizedProbabilities:
    """A read-only [L, heads, N, S] array of probabilities kept as one uint16 array per layer.

    Indexing returns float32 numpy arrays and widens only what was asked for:
    ``att[layer, :, row]`` copies heads x S values, not the layer. ``np.asarray(att)`` decodes all of it.
    """

    def __init__(self, layers: list[np.ndarray]):
        if not layers or any(a.dtype != np.uint16 or a.shape != layers[0].shape for a in layers):
            raise ValueError("need one or more uint16 arrays of equal shape, one per layer")
        self._layers = layers

    @classmethod
    def from_tensors(cls, maps: list[torch.Tensor]) -> "QuantizedProbabilities":
        """L tensors [1, heads, N, S] (a batch of one) -> [L, heads, N, S]."""
        return cls([quantize(m[0]) for m in maps])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self._layers), *self._layers[0].shape)

    ndim = property(lambda self: 1 + self._layers[0].ndim)
    dtype = np.dtype(np.float32)  # what indexing returns
    nbytes = property(lambda self: sum(a.nbytes for a in self._layers))

    def __len__(self) -> int:
        return len(self._layers)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            if not -len(self) <= first < len(self):
                raise IndexError(f"layer {first} out of range for {len(self)} layers")
            return _decode(self._layers[first][rest])
        return _decode(np.stack(self._layers)[key])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = _decode(np.stack(self._layers))
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"QuantizedProbabilities(shape={self.shape}, {self.nbytes / 1e6:.1f} MB)"


def _decode(codes) -> np.ndarray:
    return np.asarray(codes, dtype=np.float32) * np.float32(1 / SCALE)
