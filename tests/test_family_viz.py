"""Drawing deformable attention: dots where the points are, coloured by level; the slide figure and its command
line for a DETR-family folder; a one-line refusal where a figure does not apply."""
import numpy as np
import pytest
from PIL import Image

import viz
from detr_core.family import DeformableInspection, DeformableSampling
from detr_core.family.registry import FAMILY
from detr_core.inspection.coords import CoordinateMap, FeatureLevel
from viz.palette import REFERENCE_COLOUR, level_colour
from viz.slides import main as figures_main


def _hand_made() -> DeformableInspection:
    """One query, two heads, a point on each of two levels; a 320x320 grey image over a 32x32 input (x10)."""
    coords = CoordinateMap((320, 320), (32, 32), (4, 4), 8, (FeatureLevel((4, 4), 8), FeatureLevel((2, 2), 16)))
    locations = np.array([[[[[0.375, 0.625], [0.25, 0.75]], [[0.875, 0.125], [0.75, 0.25]]]]], dtype=np.float32)
    weights = np.array([[[[0.3, 0.7], [0.6, 0.4]]]], dtype=np.float32)
    references = np.full((1, 1, 1, 2), 0.5, dtype=np.float32)
    sampling = DeformableSampling(locations, weights, np.array([0, 1]), references)
    return DeformableInspection(
        image=Image.new("RGB", (320, 320), (128, 128, 128)), coords=coords,
        layer_logits=np.array([[[2.0, -1.0]]], dtype=np.float32),
        layer_boxes=np.array([[[0.5, 0.5, 0.2, 0.2]]], dtype=np.float32),  # pixels 128..192
        class_names=["a", "b"], spec=FAMILY["rt_detr"], decoder=sampling)


def _card(ins):
    return viz.card_for(ins, 0)


def test_dots_sit_on_the_points_in_their_level_colour():
    ins = _hand_made()
    image = np.asarray(viz.sampling_image(ins, _card(ins), layer=0))
    # head 0's level-2 point: normalised (0.25, 0.75) of a 2x2 grid at stride 16 -> input (8, 24) -> image (80, 240);
    # it is the heaviest point (0.7), so its dot is opaque
    assert tuple(image[240, 80]) == level_colour(1)
    assert tuple(image[160, 160]) == REFERENCE_COLOUR  # the reference point (0.5, 0.5) -> input 16 -> image 160
    assert tuple(image[5, 5]) == (128, 128, 128)  # far from every point and box: the image itself
    only_head_1 = np.asarray(viz.sampling_image(ins, _card(ins), layer=0, head=1))
    assert tuple(only_head_1[240, 80]) == (128, 128, 128)  # head 0's point is not drawn
    assert tuple(only_head_1[40, 280]) == level_colour(0)  # head 1's heaviest point, (0.875, 0.125) on level 1


def test_heavier_points_get_bigger_dots():
    blank = Image.new("RGB", (100, 50), (0, 0, 0))
    drawn = np.asarray(viz.draw_points(blank, np.array([[25.0, 25.0], [75.0, 25.0]]), np.array([1.0, 0.25]),
                                       np.array([0, 0]), max_radius=10))
    lit = drawn.sum(-1) > 0
    left, right = lit[:, :50].sum(), lit[:, 50:].sum()
    assert right / left == pytest.approx(0.25, abs=0.08)  # area proportional to weight


def test_head_grid_and_slide_figure():
    ins = _hand_made()
    grid = viz.sampling_head_grid(ins, _card(ins), layer=0)
    assert grid.width > 2 * 300 or grid.height > 2 * 300  # two head tiles
    fig = viz.sampling_figure(ins, [_card(ins)], layer=0)
    assert len(fig.axes) == 2
    assert viz.figure_png(fig, dpi=40).startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from family_models import build_tiny

    folders = {}
    for name in ("deformable_detr", "rf_detr"):
        fm = build_tiny(name)
        folders[name] = tmp_path_factory.mktemp(name)
        fm.model.save_pretrained(folders[name])
        fm.processor.save_pretrained(folders[name])
    return folders


def test_command_line_draws_the_sampling_figure(saved, rgb_image, tmp_path):
    image = tmp_path / "in.png"
    Image.fromarray(rgb_image).save(image)
    out = tmp_path / "points.png"
    figures_main([str(image), "--model", str(saved["deformable_detr"]), "--out", str(out), "--figure", "sampling",
                  "--threshold", "0", "--count", "2", "--dpi", "40"])
    assert Image.open(out).size[0] > 100


def test_command_line_says_why_a_figure_does_not_apply(saved, rgb_image, tmp_path, capsys):
    image = tmp_path / "in.png"
    Image.fromarray(rgb_image).save(image)
    with pytest.raises(SystemExit):
        figures_main([str(image), "--model", str(saved["rf_detr"]), "--out", str(tmp_path / "x.png"),
                      "--figure", "encoder", "--points", "10,10"])
    assert "no transformer encoder" in capsys.readouterr().err
    with pytest.raises(SystemExit), pytest.warns(UserWarning, match="UNTRAINED"):
        figures_main([str(image), "--model", "untrained", "--out", str(tmp_path / "x.png"), "--figure", "sampling"])
    assert "attention is dense" in capsys.readouterr().err
