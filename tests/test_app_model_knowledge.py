"""The page says what the model knows, and an image with nothing to find gets an honest one-line answer."""
import numpy as np
import torch

import detr_core
from webapp.detections_tab import render_detections
from webapp.models import LoadedModel, ModelCache, describe, known_classes
from webapp.session import Session
from webapp.store import InspectionStore

SHAPES = ["circle", "square", "triangle", "star", "cross"]


def _silent_model():
    """A tiny DETR with the shapes classes whose every query says "no object"."""
    torch.manual_seed(0)
    model = detr_core.build_model(detr_core.tiny_config(num_classes=5), detr_core.PreprocessConfig(64, 64),
                                  SHAPES).eval()
    with torch.no_grad():
        model.class_embed.weight.zero_()
        model.class_embed.bias.fill_(-20.0)
        model.class_embed.bias[-1] = 20.0
    return model


def _session(inspection, model_source: str) -> Session:
    """A page's session as the app keeps it: the image and model name, the inspection in the store."""
    return Session.start(InspectionStore(), ModelCache(optimize=False), inspection, model_source, key=model_source)


def test_the_status_line_lists_the_classes():
    line = describe(LoadedModel(_silent_model(), "shapes", "chosen by name"))
    assert "It knows 5 classes: circle, square, triangle, star, cross." in line


def test_coco_models_list_their_real_classes_not_the_unused_ids():
    text = known_classes(detr_core.COCO_CLASS_NAMES)
    assert text == ("It knows 80 classes: person, bicycle, car, motorcycle, airplane, bus, train, truck"
                    " and 72 more")


def test_no_detection_is_said_in_one_line_and_the_shapes_model_says_what_it_knows():
    model = _silent_model()
    photo = np.full((48, 64, 3), 120, np.uint8)
    inspection = detr_core.inspect_image(model, photo)
    _, rows, summary = render_detections(_session(inspection, "shapes"), 0.7)
    assert len(rows) == 0
    assert "No object above 0.70" in summary and "no object" in summary
    assert "only knows 5 shapes (circle, square, triangle, star, cross)" in summary and "detr-r50" in summary
    _, _, other = render_detections(_session(inspection, "my-model.pth"), 0.7)
    assert "No object above 0.70" in other and "detr-r50" not in other
