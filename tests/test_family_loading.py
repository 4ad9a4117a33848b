"""detr_core/family/loading.py: what the front door passes on (device, allow_download, cache folder), which door a
source goes through, the image processor a folder gets and the note saying why, the bundled family models by
name, eager attention. Tiny random-weight models saved with save_pretrained; the Hub is replaced by a fake
`fetch_model` that records how it was called and answers with local folders."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import detr_core
import detr_core.weights.hub as hub
import detr_core.weights.loading as detr_loading
from detr_core.family import FamilyModel, load_family_model, loading
from detr_core.weights.hf_model import hf_files
from family_models import TINY, build_tiny

UNSET = "unset"  # what the fake fetch_model records when allow_download was not passed at all


@pytest.fixture(scope="module")
def rt_folder(tmp_path_factory) -> Path:
    """A tiny RT-DETR saved as save_pretrained writes it, its processor (128x128) beside it."""
    folder = tmp_path_factory.mktemp("family-loading") / "rt_detr"
    fm = build_tiny("rt_detr")
    fm.model.save_pretrained(folder)
    fm.processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def detr_folder(tmp_path_factory) -> Path:
    """A tiny DETR in the Hugging Face layout (config.json model_type "detr")."""
    folder = tmp_path_factory.mktemp("family-loading") / "detr"
    detr_core.save_model(detr_core.build_model(detr_core.tiny_config(), detr_core.PreprocessConfig(
        min_size=128, max_size=213)), folder, format="hf")
    return folder


@pytest.fixture
def fake_hub(monkeypatch):
    """repo id -> local folder; every call recorded as (repo id, cache_dir, allow_download)."""
    folders, calls = {}, []

    def fetch_model(ref, cache_dir=None, allow_download=UNSET, **_):
        calls.append((ref.repo_id, cache_dir, allow_download))
        return hf_files(folders[ref.repo_id])
    monkeypatch.setattr(hub, "fetch_model", fetch_model)  # the family's hub_folder imports it when called
    monkeypatch.setattr(detr_loading, "fetch_model", fetch_model)  # locate_hf's
    return SimpleNamespace(folders=folders, calls=calls)


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


# --- what the front door passes on ------------------------------------------------------------------------------

def test_the_device_reaches_the_model_through_either_door(rt_folder, detr_folder):
    assert detr_core.load_model(rt_folder, device="meta").device.type == "meta"
    assert load_family_model(rt_folder, "meta").device.type == "meta"
    detr = detr_core.load_model(detr_folder, device="meta")
    assert isinstance(detr, detr_core.DETR) and next(detr.parameters()).device.type == "meta"


def test_a_hub_id_is_fetched_with_the_callers_allow_download_and_cache(rt_folder, fake_hub, tmp_path):
    fake_hub.folders["owner/tiny-rt"] = rt_folder
    assert load_family_model("owner/tiny-rt").spec.model_type == "rt_detr"
    load_family_model("owner/tiny-rt", cache_dir=tmp_path, allow_download=False)
    assert fake_hub.calls == [("owner/tiny-rt", None, True), ("owner/tiny-rt", tmp_path, False)]


@pytest.mark.parametrize("allow", [True, False])
def test_load_model_passes_allow_download_to_every_step(rt_folder, fake_hub, monkeypatch, allow):
    fake_hub.folders["owner/tiny-rt"] = rt_folder
    checked = []
    real_check = loading.check_family_folder
    monkeypatch.setattr(loading, "check_family_folder",
                        lambda path, allow_download=UNSET: checked.append(allow_download) or real_check(path, allow_download))
    fm = detr_core.load_model("owner/tiny-rt", allow_download=allow)
    assert isinstance(fm, FamilyModel) and fm.source == "owner/tiny-rt"
    assert [call[2] for call in fake_hub.calls] == [allow, allow]  # locate_hf's look, then the family load's
    assert checked == [allow]  # the preflight refuses Hub backbones when downloads are off


def test_by_default_load_model_may_download(rt_folder, fake_hub):
    fake_hub.folders["owner/tiny-rt"] = rt_folder
    detr_core.load_model("owner/tiny-rt")
    assert [call[2] for call in fake_hub.calls] == [True, True]


def test_a_hub_id_of_a_plain_detr_opens_as_a_detr(detr_folder, fake_hub):
    fake_hub.folders["owner/tiny-detr"] = detr_folder
    assert isinstance(detr_core.load_model("owner/tiny-detr", allow_download=False), detr_core.DETR)
    assert all(call[2] is False for call in fake_hub.calls)


def test_overrides_reach_a_detr_and_are_refused_for_the_family_by_name(rt_folder, detr_folder):
    detr = detr_core.load_model(detr_folder, min_size=96, max_size=160)
    assert (detr.preprocess.min_size, detr.preprocess.max_size) == (96, 160)
    with pytest.raises(ValueError) as err:
        detr_core.load_model(rt_folder, dilation=True)
    assert str(err.value) == ("['dilation']: overrides apply to DETR checkpoints only; the DETR-family model"
                              f" {str(rt_folder)!r} takes its whole architecture from its config.json")


# --- the bundled family models ----------------------------------------------------------------------------------

def test_a_bundled_family_model_opens_by_name_once_it_is_there(rt_folder, monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "BUNDLED_FAMILY", {"shapes-deformable": tmp_path / "missing"})
    assert loading.bundled_family_names() == ()
    with pytest.raises(RuntimeError) as err:
        detr_core.load_model("shapes-deformable")
    assert str(err.value) == (
        f"the bundled 'shapes-deformable' model is not bundled yet (expected a save_pretrained folder at"
        f" {tmp_path / 'missing'}): it is trained with `python -m train --model shapes-deformable ...` (README,"
        " training section; tools/gpu_stage.sh on a GPU). Meanwhile open 'shapes' (the bundled DETR) or a"
        " DETR-family folder or Hub id")
    monkeypatch.setattr(loading, "BUNDLED_FAMILY", {"shapes-deformable": rt_folder})
    assert loading.bundled_family_names() == ("shapes-deformable",)
    fm = detr_core.load_model("shapes-deformable", device="meta")
    assert fm.source == "shapes-deformable" and fm.spec.model_type == "rt_detr" and fm.device.type == "meta"
    with pytest.raises(ValueError) as err:
        detr_core.load_model("shapes-deformable", min_size=64)
    assert str(err.value) == "['min_size']: overrides apply to DETR checkpoints only"


# --- what cannot be opened --------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["no/such/folder/here", Path("/no/such/folder")])
def test_a_source_that_is_neither_a_folder_nor_a_hub_id_is_named(source):
    with pytest.raises(ValueError) as err:
        load_family_model(source)
    assert str(err.value) == f"model source {str(source)!r} is neither a folder nor a Hub id like 'owner/name'"


def test_weights_that_do_not_fit_the_config_are_named_with_transformers_first_line(rt_folder, tmp_path):
    folder = _copy(rt_folder, tmp_path / "rt")
    config = json.loads((folder / "config.json").read_text())
    config["encoder_ffn_dim"] *= 2  # the weights keep the old width
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as err:
        load_family_model(folder)
    message = str(err.value)
    head = (f"{folder}: its weights do not fit the RT-DETR that its config.json describes (model_type 'rt_detr');"
            " transformers says: ")
    assert message.startswith(head), message
    said = message[len(head):]  # transformers' own words, one line (its table of tensors went to its log)
    assert said.strip() and "\n" not in said and "ignore_mismatched_sizes" in said, said


# --- the image processor ----------------------------------------------------------------------------------------

def test_a_folders_own_processor_and_no_note(rt_folder):
    processor, note = loading.processor_for(str(rt_folder))
    assert type(processor).__name__ == "RTDetrImageProcessor" and processor.size == {"height": 128, "width": 128}
    assert note == ""


def test_a_processor_type_outside_the_family_is_read_with_the_models_own_class(rt_folder, tmp_path):
    """ViTImageProcessor exists in transformers but is no DETR-family processor: the folder's values are read
    with the model type's class, and the note says so."""
    folder = _copy(rt_folder, tmp_path / "rt")
    config = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**config, "image_processor_type": "ViTImageProcessor"}))
    processor, note = loading.processor_for(folder)
    assert type(processor).__name__ == "RTDetrImageProcessor" and processor.size == {"height": 128, "width": 128}
    assert note == "preprocessor_config.json names 'ViTImageProcessor'; reading it with RTDetrImageProcessor"
    del config["image_processor_type"]
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    assert loading.processor_for(folder)[1] == "preprocessor_config.json names ''; reading it with RTDetrImageProcessor"
    with pytest.warns(UserWarning) as warned:
        fm = load_family_model(folder)
    assert fm.processor_note == "preprocessor_config.json names ''; reading it with RTDetrImageProcessor"
    assert [str(w.message) for w in warned] == [f"{folder}: {fm.processor_note}"]


def test_no_processor_file_gives_the_types_defaults_and_says_so(rt_folder, tmp_path):
    folder = _copy(rt_folder, tmp_path / "rt")
    (folder / "preprocessor_config.json").unlink()
    processor, note = loading.processor_for(folder)
    assert processor.size == {"height": 640, "width": 640}
    assert note == "no preprocessor_config.json: using RTDetrImageProcessor() defaults"


# --- wrapping a model built in a notebook -----------------------------------------------------------------------

def test_a_model_built_with_sdpa_attention_is_switched_to_eager():
    """Dense attention maps come only from the eager implementation (lw_detr is one that offers sdpa)."""
    model_class, config, processor = TINY["lw_detr"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = model_class._from_config(config(), attn_implementation="sdpa")
    assert model.config._attn_implementation == "sdpa"
    fm = FamilyModel.from_transformers(model, processor(), source="notebook")
    assert fm.model.config._attn_implementation == "eager" and fm.source == "notebook" and fm.processor_note == ""
    assert FamilyModel.from_transformers(model, processor()).source == ""
