"""Fine-tuning from a saved model onto a data set with another class count, and the CLI."""
import dataclasses
import logging

import pytest
import torch
from train_helpers import shapes_set, small_recipe

import detr_core
from detr_core import PreprocessConfig
from train.__main__ import main
from train.coco_file import DataSource
from train.loop import RunConfig, Trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return shapes_set(tmp_path_factory.mktemp("data"), images=4, seed=2)


def _source_model(path, class_names):
    torch.manual_seed(1)
    config = dataclasses.replace(small_recipe().model, num_classes=len(class_names))
    model = detr_core.build_model(config, PreprocessConfig(96, 96), class_names)
    detr_core.save_model(model, path)
    return model


def test_other_class_count_reinitialises_only_class_embed(tmp_path, data, caplog):
    source = _source_model(tmp_path / "src.pth", ["cat", "dog", "bird"])
    with caplog.at_level(logging.INFO):
        trainer = Trainer(RunConfig(DataSource.from_paths(data), tmp_path / "run", small_recipe(),
                                    init_from=str(tmp_path / "src.pth")))
    model = trainer.model
    assert model.class_embed.out_features == 6 and model.class_names[0] == "circle"
    assert "class_embed re-initialised (source has 3 classes, the data set 5" in caplog.text
    src_state = source.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("class_embed."):
            assert torch.equal(value, src_state[key]), key
    assert model.preprocess.min_size == 64  # the recipe's sizes, not the source's
    assert not model.backbone[0].body.conv1.weight.requires_grad  # pre-trained stem stays fixed


def test_source_knowing_the_categories_keeps_its_head_and_label_order(tmp_path, data):
    names = ["N/A", "cross", "star", "triangle", "square", "circle", "extra"]
    source = _source_model(tmp_path / "src.pth", names)
    trainer = Trainer(RunConfig(DataSource.from_paths(data), tmp_path / "run", small_recipe(),
                                init_from=str(tmp_path / "src.pth")))
    assert torch.equal(trainer.model.class_embed.weight, source.class_embed.weight)
    assert trainer.model.class_names == names
    assert trainer.train_set.label_map.category_to_label == {1: 5, 2: 4, 3: 3, 4: 2, 5: 1}


def test_fine_tune_in_one_command(tmp_path, data):
    _source_model(tmp_path / "src.pth", ["cat", "dog"])
    code = main(["--data", str(data), "--output", str(tmp_path / "run"), "--config", "tiny",
                 "--init-from", str(tmp_path / "src.pth"), "--max-steps", "1", "--batch-size", "2",
                 "--no-progress"])
    assert code == 0
    model = detr_core.load_model(tmp_path / "run" / "last.pth")
    assert model.config.num_classes == 5 and model.preprocess.min_size == 128


def test_dropout_override_keeps_every_weight_and_reaches_every_layer(tmp_path, data):
    source = _source_model(tmp_path / "src.pth", ["cat", "dog"])
    assert source.config.dropout == 0.0
    trainer = Trainer(RunConfig(DataSource.from_paths(data), tmp_path / "run", small_recipe(),
                                init_from=str(tmp_path / "src.pth"), dropout=0.3))
    model = trainer.model
    assert model.config.dropout == 0.3  # stored with the checkpoints, so --resume rebuilds it
    rates = [m.p for m in model.transformer.modules() if isinstance(m, torch.nn.Dropout)]
    rates += [m.dropout for m in model.transformer.modules()
              if isinstance(m, torch.nn.MultiheadAttention)]
    assert rates and set(rates) == {0.3}
    src_state = source.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("class_embed."):
            assert torch.equal(value, src_state[key]), key


def test_cli_dropout_reaches_a_fresh_model(tmp_path, data):
    code = main(["--data", str(data), "--output", str(tmp_path / "run"), "--config", "tiny",
                 "--dropout", "0.25", "--max-steps", "1", "--batch-size", "2", "--no-progress"])
    assert code == 0
    assert detr_core.load_model(tmp_path / "run" / "last.pth").config.dropout == 0.25


def test_cli_reports_an_unavailable_model_source(tmp_path, data, capsys, monkeypatch):
    import detr_core.weights.loading as weights

    monkeypatch.setitem(weights.BUNDLED, "shapes", tmp_path / "not-bundled.pth")
    code = main(["--data", str(data), "--output", str(tmp_path / "o"), "--init-from", "shapes",
                 "--config", "tiny", "--no-progress"])
    assert code == 3 and "not bundled yet" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--data", "{tmp}/missing"], "missing does not exist"),
    (["--data", "{data}", "--batch-size", "9"], "fewer than --batch-size 9"),
    (["--data", "{data}", "--init-from", "{tmp}/nothing.pth"], "neither a file, a Hugging Face folder"),
    (["--data", "{data}", "--init-from", "shapes", "--resume", "{tmp}/x.pth"], "exclude each other"),
    (["--data", "{data}", "--max-steps", "0"], "--max-steps 0"),
    (["--data", "{data}", "--dropout", "1.5"], "dropout=1.5"),
    (["--data", "{data}", "--dropout", "0", "--resume", "{tmp}/x.pth"], "a resumed run keeps"),
    (["--data", "{data}/annotations.json"], "--images DIR"),
])
def test_cli_bad_input_gives_a_clear_error(tmp_path, data, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, data=data) for a in argv]
    code = main(argv + ["--output", str(tmp_path / "out"), "--config", "tiny", "--no-progress"])
    assert code == 2
    assert message in capsys.readouterr().err
