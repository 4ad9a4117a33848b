"""On a page served beyond loopback without --allow-hub-download nothing is downloaded: not a Hub id, not the
official zoo, not the `auto` probe, not a Hub backbone named in an already cached family model's config. Every
download target is a stand-in on 127.0.0.1 (tests/fake_hub.py) that records each request. The app's model cache
runs in a subprocess whose HF_ENDPOINT points at it (huggingface_hub reads the endpoint when it is imported), and
the same script with downloads allowed shows that requests do arrive there when they are made."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fake_hub import FakeHub, folder_files, write_cache

pytest.importorskip("transformers")
pytest.importorskip("timm")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
HUB_BACKBONE = "someone/hub-backbone"  # cached; its config names backbone "someone/resnet" (transformers' ResNet)
TIMM_HUB = "someone/timm-hub"  # cached; its config names the timm backbone "hf-hub:someone/resnet"
# cached; "resnet50" with backbone_kwargs, as transformers 4.x saved it: transformers 5 asks the Hub whether a repo
# "resnet50" exists before building it with timm
PLAIN_NAME = "someone/plain-name"

MARKER = "/between-the-two-runs"
# Both runs in one process (its imports take most of the time): downloads off, a marker request, downloads on.
SCRIPT = textwrap.dedent('''
    import json, os, sys, urllib.request
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    from detr_core.weights import zoo
    from webapp.model_sources import SourcePolicy
    from webapp.models import ModelCache

    zoo.OFFICIAL_BASE_URL = os.environ["HF_ENDPOINT"] + "/zoo/"  # the official zoo's server, as the fake

    def run(allowed):
        models = ModelCache(optimize=False, hub_downloads=allowed, auto_timeout=5)
        outcomes = {"auto": models.resolve("auto").source + ": " + models.resolve("auto").reason}
        for name in json.loads(sys.argv[3]):
            try:
                models.get(name)
                outcomes[name] = "LOADED"
            except (RuntimeError, ValueError, OSError) as err:
                outcomes[name] = f"{type(err).__name__}: {err}"
        try:
            outcomes["policy detr-r50"] = SourcePolicy((), hub_downloads=allowed).check("detr-r50")
        except ValueError as err:
            outcomes["policy detr-r50"] = f"refused: {err}"
        return outcomes

    closed = run(False)
    try:
        urllib.request.urlopen(os.environ["HF_ENDPOINT"] + sys.argv[4], timeout=5)
    except OSError:  # the fake answers 404
        pass
    print(json.dumps({"closed": closed, "allowed": run(True)}))
''')
SOURCES = (HUB_BACKBONE, TIMM_HUB, PLAIN_NAME, "detr-r50", "someone/not-cached")


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """A Hub cache holding the three family models whose configs name backbones from outside the folder, and an
    empty zoo cache."""
    from family_models import build_tiny

    tmp = tmp_path_factory.mktemp("no-download")
    fm = build_tiny("conditional_detr")
    fm.model.save_pretrained(tmp / "cond")
    fm.processor.save_pretrained(tmp / "cond")
    files = folder_files(tmp / "cond")
    config = json.loads(files["config.json"])
    for repo, backbone in ((HUB_BACKBONE, {"backbone": "someone/resnet", "use_timm_backbone": False}),
                           (TIMM_HUB, {"backbone": "hf-hub:someone/resnet", "use_timm_backbone": True}),
                           (PLAIN_NAME, {"backbone": "resnet50", "use_timm_backbone": True,
                                         "backbone_kwargs": {"out_indices": [4], "in_chans": 3}})):
        hostile = {**config, "backbone_config": None, **backbone}
        write_cache(tmp / "hub", repo, {**files, "config.json": json.dumps(hostile).encode()})
    return tmp


@pytest.fixture(scope="module")
def runs(caches):
    """(outcomes, requests) with downloads off, then the same with downloads allowed."""
    with FakeHub({}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(caches / "hub"), "TORCH_HOME": str(caches / "torch"),
               "DETR_LENS_COMPILE": "0", "PATH": "/usr/bin:/bin", "HOME": str(caches)}
        run = subprocess.run([sys.executable, "-c", SCRIPT, str(TESTS), str(ROOT), json.dumps(SOURCES), MARKER],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    outcomes = json.loads(run.stdout.strip().splitlines()[-1])
    split = hub.requests.index(MARKER)
    return (outcomes["closed"], hub.requests[:split]), (outcomes["allowed"], hub.requests[split + 1:])


def test_without_the_flag_no_request_reaches_any_download_server(runs):
    (outcomes, requests), _ = runs
    assert requests == [], outcomes
    assert outcomes["auto"].startswith("shapes: ") and "downloads are not allowed" in outcomes["auto"]
    for name, words in ((HUB_BACKBONE, "backbone 'someone/resnet' would be fetched from the Hugging Face Hub"),
                        (TIMM_HUB, "backbone 'hf-hub:someone/resnet' would be fetched"),
                        ("detr-r50", "detr-r50-e632da11.pth is not in the cache"),
                        ("someone/not-cached", "is not in the Hub cache")):
        assert words in outcomes[name] and "--allow-hub-download" in outcomes[name], (name, outcomes[name])
    # built as transformers would (a timm ResNet-50), without asking the Hub: then the tiny weights do not cover it
    assert "parameters but the weights file holds only" in outcomes[PLAIN_NAME], outcomes[PLAIN_NAME]
    assert outcomes["policy detr-r50"].startswith("refused: ") and "--allow-hub-download" in outcomes["policy detr-r50"]


def test_with_the_flag_the_same_loads_do_reach_the_server(runs):
    """The control: the subprocess's requests go to the stand-in, so the test above would have seen them."""
    _, (outcomes, requests) = runs
    paths = " ".join(requests)
    assert "/zoo/detr-r50-e632da11.pth" in paths  # the auto probe and the zoo download
    assert "someone/resnet" in paths  # transformers asked the Hub about the backbone
    assert "someone/not-cached" in paths
    assert "/api/models/resnet50" in paths  # the plain name's look-up, which the closed run did without
    assert outcomes["policy detr-r50"] == "detr-r50"
