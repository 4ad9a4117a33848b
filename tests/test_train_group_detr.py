"""Group DETR: each group decodes as if alone, losses add up per group, the saved model is plain."""
import pytest
import torch
from train_helpers import shapes_set, small_recipe

import detr_core
from detr_core.objective.criterion import SetCriterion
from train.coco_file import DataSource
from train.group_detr import GroupCriterion, GroupDETR, split_groups
from train.loop import RunConfig, Trainer, train


def _model():
    torch.manual_seed(0)
    return detr_core.build_model(small_recipe().model, detr_core.PreprocessConfig(64, 64)).eval()


def test_each_group_decodes_exactly_like_the_model_with_its_queries():
    model = _model()
    grouped = GroupDETR(model, groups=3).eval()
    x = torch.randn(2, 3, 64, 48)
    mask = torch.zeros(2, 64, 48, dtype=torch.bool)
    mask[1, :, 40:] = True  # one padded image
    with torch.no_grad():
        out = grouped(x, mask)
        parts = split_groups(out, 3)
        assert out["pred_logits"].shape == (2, 3 * model.config.num_queries, 6)
        assert torch.allclose(parts[0]["pred_boxes"], model(x, mask)["pred_boxes"], atol=1e-5)
        for g in (1, 2):
            other = detr_core.build_model(model.config, model.preprocess)  # group g's queries
            other.load_state_dict(model.state_dict())
            other.query_embed.weight.copy_(grouped.extra_queries[g - 1])
            expected = other.eval()(x, mask)
            assert torch.allclose(parts[g]["pred_logits"], expected["pred_logits"], atol=1e-5)
            assert torch.allclose(parts[g]["aux_outputs"][0]["pred_boxes"],
                                  expected["aux_outputs"][0]["pred_boxes"], atol=1e-5)


def test_group_losses_sum_and_errors_average():
    gen = torch.Generator().manual_seed(0)
    outputs = {"pred_logits": torch.randn(1, 6, 4, generator=gen),
               "pred_boxes": torch.rand(1, 6, 4, generator=gen) * 0.4 + 0.3}
    targets = [{"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[.3, .3, .2, .2], [.6, .6, .2, .3]])}]
    base = SetCriterion(num_classes=3)
    grouped = GroupCriterion(base, groups=2)(outputs, targets)
    halves = [base(o, targets) for o in split_groups(outputs, 2)]
    for key in ("loss_ce", "loss_bbox", "loss_giou"):
        assert grouped[key].item() == pytest.approx(halves[0][key].item() + halves[1][key].item())
    mean_error = (halves[0]["class_error"] + halves[1]["class_error"]).item() / 2
    assert grouped["class_error"].item() == pytest.approx(mean_error)


def test_training_with_groups_saves_a_plain_model_and_resumes_exactly(tmp_path):
    data = shapes_set(tmp_path / "data", images=4, seed=6)
    recipe = small_recipe(epochs=2).replace(query_groups=3)

    def run(out, steps, resume=None):
        train(RunConfig(DataSource.from_paths(data), out, recipe, max_steps=steps, seed=1,
                        resume=resume, progress_bar=False))

    run(tmp_path / "straight", 3)
    run(tmp_path / "split", 1)
    run(tmp_path / "split", 3, resume=tmp_path / "split" / "last.pth")
    a = torch.load(tmp_path / "straight" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pth", weights_only=True)
    assert a["extra_state"]["group_queries"].shape == (2, recipe.model.num_queries, 32)
    assert torch.equal(a["extra_state"]["group_queries"], b["extra_state"]["group_queries"])
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    model = detr_core.load_model(tmp_path / "straight" / "last.pth")
    assert model.query_embed.weight.shape[0] == recipe.model.num_queries

    with pytest.raises(ValueError, match="trained with 3 query group"):
        train(RunConfig(DataSource.from_paths(data), tmp_path / "split", recipe.replace(query_groups=2),
                        max_steps=4, resume=tmp_path / "split" / "last.pth", progress_bar=False))


def test_fine_tuning_from_a_group_checkpoint_continues_its_groups(tmp_path, caplog):
    data = shapes_set(tmp_path / "data", images=4, seed=6)
    recipe = small_recipe(epochs=2).replace(query_groups=3)
    train(RunConfig(DataSource.from_paths(data), tmp_path / "high", recipe, max_steps=1, seed=1,
                    progress_bar=False))
    source = tmp_path / "high" / "last.pth"
    saved = torch.load(source, weights_only=True)["extra_state"]["group_queries"]
    with caplog.at_level("INFO"):
        trainer = Trainer(RunConfig(DataSource.from_paths(data), tmp_path / "low", recipe,
                                    init_from=str(source), seed=2, progress_bar=False))
    assert torch.equal(trainer.trainable.extra_queries.detach(), saved)
    assert "continuing its 2 extra query groups" in caplog.text
    with caplog.at_level("INFO"):  # another group count: the extra groups start afresh
        other = Trainer(RunConfig(DataSource.from_paths(data), tmp_path / "other", recipe.replace(query_groups=2),
                                  init_from=str(source), seed=2, progress_bar=False))
    assert other.trainable.extra_queries.shape[0] == 1 and "start random" in caplog.text
