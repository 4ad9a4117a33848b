"""Dense pre-training targets: each cell gets the shape under its centre, and flips move targets with pixels."""
import numpy as np
import torch

from train.pretrain_backbone import ImagePool, cell_targets, dense_loss, DenseTargets
from train.synthetic import CLASS_NAMES, ShapeObject

BG = len(CLASS_NAMES)


def test_cell_targets_follow_the_mask():
    mask = np.zeros((64, 64), dtype=bool)
    mask[0:20, 32:64] = True  # a shape in the top-right corner
    labels, boxes = cell_targets([ShapeObject(2, mask, int(mask.sum()))], size=64, stride=16)
    # Cell centres are at 8, 24, 40, 56: rows 0 (y=8) is inside, row 1 (y=24) is not; cols 2, 3 inside.
    expected = np.full((4, 4), BG)
    expected[0, 2:] = 2
    assert (labels == expected).all()
    np.testing.assert_allclose(boxes[0, 3], [32 / 64, 0, 1, 20 / 64])
    assert (boxes[labels == BG] == 0).all()


def test_flip_mirrors_pixels_labels_and_boxes():
    pool = ImagePool(count=3, seed=5, size=64, stride=16, mean=(0, 0, 0), std=(1, 1, 1))
    index = torch.tensor([0, 1, 2])
    x, t = pool.batch(index, torch.tensor([False, False, False]))
    xf, tf = pool.batch(index, torch.tensor([True, False, True]))
    torch.testing.assert_close(xf[0], x[0].flip(-1))
    torch.testing.assert_close(xf[1], x[1])
    assert torch.equal(tf.labels[2], t.labels[2].flip(-1))
    fg = t.labels[0] < BG
    if fg.any():
        r, c = [int(v) for v in fg.nonzero()[0]]
        x0, y0, x1, y1 = t.boxes[0, r, c]
        torch.testing.assert_close(tf.boxes[0, r, 3 - c], torch.stack([1 - x1, y0, 1 - x0, y1]))


def test_dense_loss_is_small_for_perfect_predictions():
    labels = torch.tensor([[[0, BG], [BG, 3]]])  # [1, 2, 2]
    boxes = torch.rand(1, 2, 2, 4)
    logits = torch.nn.functional.one_hot(labels, BG + 1).permute(0, 3, 1, 2).float() * 50
    loss, acc = dense_loss(logits, boxes.permute(0, 3, 1, 2), DenseTargets(labels, boxes))
    assert loss.item() < 1e-6 and acc == 1.0
    wrong, _ = dense_loss(logits, (1 - boxes).permute(0, 3, 1, 2), DenseTargets(labels, boxes))
    assert wrong.item() > 0.1
