"""CoordinateMap: every mapping between original pixels, model input and feature cells, worked out by hand.

The geometry is deliberately lopsided so that a swapped height/width or a forgotten scale shows:
a 200x100 (W x H) original shown to the model at 96x64, so x scales by 0.48 and y by 0.64, stride 16,
and a 5x7 feature grid that reaches past the 4x6 cells the input covers (padding, as in a batch).
"""
import numpy as np
import pytest

from detr_core import CoordinateMap
from detr_core.inspection.coords import FeatureLevel

LOPSIDED = CoordinateMap(image_size=(100, 200), input_size=(64, 96), feature_size=(5, 7), stride=16)
# one input cell (16 px) is 16 / 0.48 = 33.33 original pixels wide and 16 / 0.64 = 25 tall
CELL_W, CELL_H = 100 / 3, 25.0


def test_valid_cells_exclude_padding():
    # ceil(64 / 16) = 4 rows, ceil(96 / 16) = 6 columns; the grid has 5 x 7
    assert LOPSIDED.valid_cells == (4, 6)
    # an input that ends inside a cell: ceil(70 / 16) = 5, ceil(33 / 16) = 3
    assert CoordinateMap((70, 33), (70, 33), (5, 3), 16).valid_cells == (5, 3)
    # a grid smaller than the input would need is its own limit
    assert CoordinateMap((70, 33), (70, 33), (2, 2), 16).valid_cells == (2, 2)


def test_pixel_to_input_scales_x_by_width_and_y_by_height():
    assert LOPSIDED.pixel_to_input(50, 50) == pytest.approx((24.0, 32.0))
    assert LOPSIDED.pixel_to_input(200, 100) == pytest.approx((96.0, 64.0))


@pytest.mark.parametrize("point,cell", [
    ((0, 0), (0, 0)),
    # x: (50 + 0.5) * 0.48 = 24.2 -> column 1; y: (50 + 0.5) * 0.64 = 32.3 -> row 2
    ((50, 50), (2, 1)),
    # the last pixel of a column: x = 32 -> 32.5 * 0.48 = 15.6 (column 0); x = 33 -> 16.08 (column 1)
    ((32, 0), (0, 0)), ((33, 0), (0, 1)),
    # rows: y = 24 -> 15.68 (row 0); y = 25 -> 16.32 (row 1)
    ((0, 24), (0, 0)), ((0, 25), (1, 0)),
    # the bottom-right pixel is in the last valid cell, never in the padding cells
    ((199, 99), (3, 5)),
    # half a pixel of slack past the edge for display rounding, clamped to the last pixel
    ((200.4, 100.4), (3, 5)),
])
def test_pixel_to_cell(point, cell):
    assert LOPSIDED.pixel_to_cell(*point) == cell


def test_the_last_pixel_is_in_the_last_cell_and_never_past_the_grid():
    # 33 px at stride 16: three cells, the last holding one pixel (32); pixel 31 is in the middle cell
    edge = CoordinateMap((33, 33), (33, 33), (3, 3), 16)
    assert edge.pixel_to_cell(32, 32) == (2, 2) and edge.pixel_to_cell(31, 31) == (1, 1)
    assert edge.pixel_to_cell(33.4, 33.4) == (2, 2)  # display-rounding slack: still the last cell
    # a grid smaller than the input needs (2 x 2 cells for 70 x 33 px): clamped to its last cell
    small = CoordinateMap((70, 33), (70, 33), (2, 2), 16)
    assert small.pixel_to_cell(32, 69) == (1, 1)


@pytest.mark.parametrize("point", [(-0.1, 5), (5, -0.1), (200.5, 5), (5, 100.5), (1000, 1000)])
def test_points_outside_the_image_are_refused(point):
    with pytest.raises(ValueError, match="outside the 200x100 image"):
        LOPSIDED.pixel_to_cell(*point)


def test_cell_index_is_row_major_over_the_whole_grid():
    assert LOPSIDED.cell_index(0, 0) == 0
    assert LOPSIDED.cell_index(2, 3) == 2 * 7 + 3  # rows are 7 cells long, padding included
    assert LOPSIDED.cell_index(4, 6) == 34


def test_cell_center_in_original_pixels():
    assert LOPSIDED.cell_center(0, 0) == pytest.approx((CELL_W / 2, CELL_H / 2))
    assert LOPSIDED.cell_center(1, 2) == pytest.approx((2.5 * CELL_W, 1.5 * CELL_H))  # (83.33, 37.5)


def test_cell_bounds_are_clipped_to_the_image():
    assert LOPSIDED.cell_bounds(0, 0) == pytest.approx((0, 0, CELL_W, CELL_H))
    assert LOPSIDED.cell_bounds(2, 1) == pytest.approx((CELL_W, 50, 2 * CELL_W, 75))
    assert LOPSIDED.cell_bounds(3, 5) == pytest.approx((5 * CELL_W, 75, 200, 100))
    # a cell that pokes out of the image: 100 x 150 shown as is, stride 32 -> the last cell ends at 150 / 100
    clipped = CoordinateMap((100, 150), (100, 150), (4, 5), 32)
    assert clipped.cell_bounds(3, 4) == (128, 96, 150, 100)


def test_grid_extent_covers_the_padding_cells():
    # 5 rows of 25 px, 7 columns of 33.33 px: larger than the 100 x 200 image
    assert LOPSIDED.grid_extent() == pytest.approx((125.0, 7 * CELL_W))


def test_boxes_to_pixels_scales_x_by_width_and_y_by_height():
    boxes = np.array([[0.5, 0.5, 0.2, 0.4],  # centred: x 80..120 of 200, y 30..70 of 100
                      [0.1, 0.9, 0.2, 0.2]])  # bottom-left corner: x 0..40, y 80..100
    expected = [[80, 30, 120, 70], [0, 80, 40, 100]]
    np.testing.assert_allclose(LOPSIDED.boxes_to_pixels(boxes), expected, atol=1e-9)
    # a single box [4] comes back as [1, 4]
    np.testing.assert_allclose(LOPSIDED.boxes_to_pixels(boxes[0]), expected[:1], atol=1e-9)


def test_box_cell_coverage_counts_fractions_of_cells():
    # original (0, 0, 50, 25) -> input (0, 0, 24, 16) -> cells: columns 0..1.5, rows 0..1
    exact = LOPSIDED.box_cell_coverage((0, 0, 50, 25), grow_cells=0)
    expected = np.zeros((5, 7))
    expected[0, 0], expected[0, 1] = 1.0, 0.5
    np.testing.assert_allclose(exact, expected)
    # grown by one cell: rows -1..2 -> rows 0 and 1; columns -1..2.5 -> 0, 1 and half of 2
    grown = LOPSIDED.box_cell_coverage((0, 0, 50, 25))
    expected = np.zeros((5, 7))
    expected[:2, :2], expected[:2, 2] = 1.0, 0.5
    np.testing.assert_allclose(grown, expected)


def test_box_cell_coverage_in_the_middle_of_the_grid():
    # original x 100..150, y 50..60 -> input x 48..72 (cells 3..4.5), y 32..38.4 (cells 2..2.4)
    coverage = LOPSIDED.box_cell_coverage((100, 50, 150, 60), grow_cells=0)
    expected = np.zeros((5, 7))
    expected[2, 3], expected[2, 4] = 0.4, 0.4 * 0.5
    np.testing.assert_allclose(coverage, expected, atol=1e-12)
    # half a cell of growth: rows 1.5..2.9 -> half of row 1, 0.9 of row 2; columns 2.5..5 -> half of 2, 3, 4
    grown = LOPSIDED.box_cell_coverage((100, 50, 150, 60), grow_cells=0.5)
    rows, cols = np.array([0, 0.5, 0.9, 0, 0]), np.array([0, 0, 0.5, 1, 1, 0, 0])
    np.testing.assert_allclose(grown, rows[:, None] * cols[None, :], atol=1e-12)


# ---- boxes between two sizes of one image (the detections table's "original pixels") -------------------------

def test_boxes_in_size_scales_x_by_width_and_y_by_height_then_clips():
    from detr_core.inspection.coords import boxes_in_size
    # a 100x200 (H, W) image shown at 50x400: x doubles, y halves
    out = boxes_in_size([[10, 20, 150, 90], [-5, -3, 210, 120]], (100, 200), (50, 400))
    assert out.dtype == np.float64 and out.shape == (2, 4)
    np.testing.assert_array_equal(out[0], [20, 10, 300, 45])
    np.testing.assert_array_equal(out[1], [0, 0, 400, 50])  # past every border: clipped to the new size
    np.testing.assert_array_equal(boxes_in_size([3.5, 4, 7, 9], (10, 10), (10, 10)), [[3.5, 4, 7, 9]])
    np.testing.assert_array_equal(boxes_in_size([[0, 0, 12, 11]], (10, 10), (10, 10)), [[0, 0, 10, 10]])


# ---- several feature levels (the DETR family) ---------------------------------------------------------------

@pytest.mark.parametrize("size", [(0, 10), (10, 0)])
@pytest.mark.parametrize("which", ["input", "level"])
def test_infer_stride_refuses_empty_sizes_naming_them(size, which):
    from detr_core.inspection.coords import infer_stride
    args = (size, (5, 5)) if which == "input" else ((10, 10), size)
    with pytest.raises(ValueError, match=r"sizes must be positive") as err:
        infer_stride(*args)
    assert str(size) in str(err.value)


def test_infer_stride_by_hand():
    from detr_core.inspection.coords import infer_stride
    assert infer_stride((1, 1), (1, 1)) == 1  # one pixel, one cell (2 and 3 fit too: the nearest power of two)
    assert infer_stride((2, 2), (1, 1)) == 2  # 2, 3 and 4 fit; of the powers 2 and 4, the nearest to 2
    assert infer_stride((100, 60), (13, 8)) == 8  # ceil(12.5) = 13, ceil(7.5) = 8; 7 gives 15, 9 gives 12
    assert infer_stride((90, 90), (10, 10)) == 9  # only 9 fits (8 gives 12, 10 gives 9): no power of two
    assert infer_stride((12, 12), (3, 3)) == 4  # 4 and 5 fit (ceil(2.4) = 3): the power of two
    # a 480-px input's coarsest Deformable DETR level: 8 cells, ceil(480 / 64) = 8 (60 to 68 fit; 64 the power)
    assert infer_stride((480, 480), (8, 8)) == 64
    with pytest.raises(ValueError, match="resized or padded in a way this tool does not know"):
        infer_stride((100, 100), (10, 3))


def test_levels_by_hand():
    """Two levels of a 64x96 input (strides 8 and 32) shown on a 100x200 original."""
    coords = CoordinateMap.multi_scale((100, 200), (64, 96), [(8, 12), (2, 3)])
    assert coords.levels == (FeatureLevel((8, 12), 8), FeatureLevel((2, 3), 32))
    assert coords.feature_size == (8, 12) and coords.stride == 8
    assert isinstance(coords.level_scale(1), int) and coords.level_scale(1) == 4
    assert coords.level(-1) == coords.level(1) and coords.level(-2) == coords.level(0)
    for bad in (2, -3):
        with pytest.raises(ValueError, match=rf"level={bad} out of range 0\.\.1$"):
            coords.level(bad)
    # a single-grid map (DETR) has one level: its own grid
    assert LOPSIDED.level(0) == FeatureLevel((5, 7), 16) and LOPSIDED.level(5) == FeatureLevel((5, 7), 16)
    # row-major index on each level's own grid
    assert coords.level_cell_index(1, 2, 0) == 1 * 12 + 2 and coords.level_cell_index(1, 2, 1) == 1 * 3 + 2


def test_common_grid_rows_and_cols_are_whole_cells():
    coords = CoordinateMap.multi_scale((96, 96), (96, 96), [(12, 12), (3, 3)])  # strides 8 and 32
    assert coords.feature_size == (12, 12) and all(isinstance(n, int) for n in coords.feature_size)


def test_multi_scale_refuses_no_levels_and_strides_that_do_not_nest():
    with pytest.raises(ValueError, match="^multi_scale needs at least one feature level$"):
        CoordinateMap.multi_scale((64, 96), (64, 96), [])
    with pytest.raises(ValueError, match="^level stride 12 is not a multiple of the finest stride 8: the levels "
                                         "cannot share one display grid$"):
        CoordinateMap.multi_scale((96, 96), (96, 96), [(12, 12), (8, 8)])


def test_normalised_points_become_floats_even_from_integers():
    coords = CoordinateMap.multi_scale((100, 200), (64, 96), [(8, 12)])
    cells = coords.normalised_to_level_cells(np.array([[0, 1]]), 0)  # integer input: the edges of the grid
    assert cells.dtype == np.float64 and cells.tolist() == [[-0.5, 7.5]]


def test_image_points_to_pixels_by_hand():
    # x by the width (200), y by the height (100); a third coordinate is ignored
    out = LOPSIDED.image_points_to_pixels(np.array([[[0.5, 0.25, 9.0]], [[1, 1, 9]]]))
    assert out.shape == (2, 1, 2) and out.dtype == np.float64
    assert out.tolist() == [[[100.0, 25.0]], [[200.0, 100.0]]]


def test_map_to_input_upsamples_cells_bilinearly():
    coords = CoordinateMap((14, 20), (7, 10), (2, 3), 4)  # image twice the input
    grid = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    up = coords.map_to_input(grid)
    assert up.shape == (7, 10)
    assert up[0, 0] == up[1, 1] == 1.0  # up to the first cell's centre: clamped to it
    # input pixel (row 6, col 9): grid coordinates (6.5 / 4 - 0.5, 9.5 / 4 - 0.5) = (1.125 -> row 1, 1.875)
    assert up[6, 9] == pytest.approx(0.125 * 5.0 + 0.875 * 6.0)
    assert coords.map_to_input(np.ones((14, 20))).shape == (7, 10)
    assert coords.input_map_to_image(up).shape == (14, 20)
    with pytest.raises(ValueError, match="fits neither"):
        coords.map_to_input(np.ones((3, 3)))
    with pytest.raises(ValueError, match="must be 2-D"):
        coords.map_to_input(np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match="input size"):
        coords.input_map_to_image(np.ones((14, 20)))


def test_an_image_map_is_resized_and_a_box_scaled_to_the_input():
    coords = CoordinateMap((14, 20), (7, 10), (2, 3), 4)
    image_map = np.zeros((14, 20))
    image_map[:, 10:] = 1.0  # right half
    up = coords.map_to_input(image_map)
    # input column j samples image x = 2j + 0.5 (bilinear, no antialiasing): j = 4 reads 8-9, j = 5 reads 10-11
    assert up[:, :5].max() == 0.0 and up[:, 5:].min() == 1.0
    assert coords.box_to_input((2, 4, 10, 14)) == (1.0, 2.0, 5.0, 7.0)
