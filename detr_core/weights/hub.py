"""Hugging Face Hub ids (`owner/name`, optional `@revision`): fetched once into the Hub's standard cache.

A model already in the cache opens with no network access at all. Otherwise it is downloaded with
`huggingface_hub` (its own progress bars), unless the Hub is switched off (`HF_HUB_OFFLINE=1`) or does not answer
within a few seconds: then the error names the repo, the cache folder and how to fill it from another machine.
"""
from __future__ import annotations

import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants  # the rest of huggingface_hub (its HTTP stack, ~0.5 s) loads on first use

from .hf_model import CONFIG, PREPROCESSOR, WEIGHT_FILES, HFFiles

# The Hugging Face DETRs the app's menu offers (COCO detection; tables in document images)
HUB_MODELS = ("facebook/detr-resnet-50", "facebook/detr-resnet-50-dc5", "facebook/detr-resnet-101",
              "facebook/detr-resnet-101-dc5", "microsoft/table-transformer-detection",
              "microsoft/table-transformer-structure-recognition")
_REF = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[\w.\-/]+))?$")
PROBE_TIMEOUT = 3.0  # seconds a dead network may hold a load before the error
DOWNLOADS_OFF = "downloads are not allowed for this load"  # the reason given when allow_download=False


MAX_REVISION_LENGTH = 255  # git's limit on a ref name component; a commit hash is 40


@dataclass(frozen=True)
class HubRef:
    """A Hub repo and revision, both validated when made: they become URL paths and folders of the Hub cache
    (refs/<revision>, snapshots/<revision>), so `owner/name@../../../etc` must be refused before any use."""

    repo_id: str
    revision: str = "main"

    def __post_init__(self):
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(self.repo_id)
        except HFValidationError as err:
            raise ValueError(f"{self.repo_id!r:.80} is not a valid Hugging Face repo id: {err}") from None
        problem = revision_problem(self.revision)
        if problem:
            raise ValueError(f"revision {self.revision!r:.80} of {self.repo_id} is not a valid git revision"
                             f" ({problem}); give a branch, a tag or a commit hash")

    def __str__(self) -> str:
        return self.repo_id if self.revision == "main" else f"{self.repo_id}@{self.revision}"


def parse_hub_ref(text: str) -> HubRef | None:
    """"owner/name" or "owner/name@revision" -> HubRef; None for anything else. ValueError for text of that form
    whose repo id or revision is not valid (see HubRef)."""
    m = _REF.match(text.strip()) if isinstance(text, str) else None
    return HubRef(m["repo"], m["rev"] or "main") if m else None


def revision_problem(revision: str) -> str:
    """What git's ref-name rules (git check-ref-format) say is wrong with `revision`; "" if nothing."""
    if not isinstance(revision, str) or not revision:
        return "empty"
    if len(revision) > MAX_REVISION_LENGTH:
        return f"longer than {MAX_REVISION_LENGTH} characters"
    if not re.fullmatch(r"[\w.\-/]+", revision):
        return "only letters, digits, '_', '-', '.' and '/' are allowed"
    if ".." in revision or "//" in revision:
        return "'..' and '//' are not allowed"
    parts = revision.split("/")
    if any(not part or part.startswith(".") or part.endswith((".lock", ".")) for part in parts):
        return "no part may be empty, start with '.' or end with '.' or '.lock'"
    return ""


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The Hub cache: cache_dir, else $HF_HUB_CACHE as it is now, else huggingface_hub's default."""
    return Path(cache_dir or os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def offline_mode() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now, or when huggingface_hub was imported."""
    now = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return now.strip().lower() in ("1", "true", "yes", "on") or constants.HF_HUB_OFFLINE


def endpoint_url(endpoint: str | None = None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def cached_model(ref: HubRef, cache_dir: str | os.PathLike | None = None) -> HFFiles | None:
    """The model's files if the cache holds its config and weights (no network); else None."""
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache_dir(cache_dir)

    def cached(name: str) -> Path | None:
        found = try_to_load_from_cache(ref.repo_id, name, cache_dir=cache, revision=ref.revision)
        return Path(found) if isinstance(found, str) else None

    config = cached(CONFIG)
    weights = next((p for p in map(cached, WEIGHT_FILES) if p is not None), None)
    if config is None or weights is None:
        return None
    return HFFiles(config, weights, cached(PREPROCESSOR), str(ref))


def fetch_model(ref: HubRef, cache_dir: str | os.PathLike | None = None, endpoint: str | None = None,
                probe_timeout: float = PROBE_TIMEOUT, allow_download: bool = True) -> HFFiles:
    """The model's files, from the cache or downloaded into it once (allow_download=False: the cache only, no
    request of any kind).

    RuntimeError when it is not cached and cannot be downloaded now (offline, Hub unreachable, not allowed);
    ValueError when the Hub says the repo, revision or its config.json does not exist."""
    from huggingface_hub import errors

    cache = hub_cache_dir(cache_dir)
    found = cached_model(ref, cache)
    if found is not None:
        return found
    url = endpoint_url(endpoint)
    if not allow_download:
        raise RuntimeError(not_cached_message(ref, cache, DOWNLOADS_OFF))
    if offline_mode():
        raise RuntimeError(not_cached_message(ref, cache, "HF_HUB_OFFLINE is set"))
    # the revision encoded as huggingface_hub encodes it ("refs/pr/3" is one path segment)
    if not _answers(f"{url}/{ref.repo_id}/resolve/{urllib.parse.quote(ref.revision, safe='')}/{CONFIG}",
                    probe_timeout):
        raise RuntimeError(not_cached_message(ref, cache, f"{url} did not answer within {probe_timeout:g} s"))
    try:
        return _download(ref, cache, url)
    except errors.LocalEntryNotFoundError as err:  # the connection dropped between the probe and the download
        raise RuntimeError(not_cached_message(ref, cache, f"the download failed: {err}")) from None
    except errors.RevisionNotFoundError:
        raise ValueError(f"Hugging Face repo {ref.repo_id!r} has no revision {ref.revision!r}") from None
    except errors.GatedRepoError:
        raise ValueError(f"Hugging Face repo {ref.repo_id!r} is gated: accept its terms on the Hub, then log in"
                         " with `hf auth login`") from None
    except errors.RepositoryNotFoundError:
        raise ValueError(f"Hugging Face repo {ref.repo_id!r} does not exist (or is private: log in with"
                         " `hf auth login`)") from None
    except errors.EntryNotFoundError:
        raise ValueError(f"Hugging Face repo {str(ref)!r} has no {CONFIG}: it is not a transformers model") from None
    except (errors.HfHubHTTPError, OSError) as err:
        raise RuntimeError(f"could not download {ref} from {url} ({err})") from None


def _download(ref: HubRef, cache: Path, url: str) -> HFFiles:
    from huggingface_hub import hf_hub_download

    def get(name: str) -> Path:
        return Path(hf_hub_download(ref.repo_id, name, revision=ref.revision, cache_dir=cache, endpoint=url))

    config = get(CONFIG)  # first: a repo without it is not a transformers model, and stops here
    preprocessor = _optional(get, PREPROCESSOR)
    weights = _optional(get, WEIGHT_FILES[0]) or _optional(get, WEIGHT_FILES[1])
    if weights is None:
        raise ValueError(f"Hugging Face repo {str(ref)!r} has neither {' nor '.join(WEIGHT_FILES)}")
    return HFFiles(config, weights, preprocessor, str(ref))


def _optional(get, name: str) -> Path | None:
    from huggingface_hub import errors

    try:
        return get(name)
    except errors.LocalEntryNotFoundError:
        raise
    except errors.EntryNotFoundError:  # the repo has no such file (remote answer)
        return None


def _answers(url: str, timeout: float) -> bool:
    """True if the server answers a HEAD request at all (any HTTP status) within `timeout` s, DNS included."""
    answer: list[bool] = []

    def probe():
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                answer.append(True)
        except urllib.error.HTTPError:  # 401, 404...: the server is there; hf_hub_download says what it means
            answer.append(True)
        except Exception:  # refused, unresolvable, timed out: no Hub now
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="hub-probe")
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def not_cached_message(ref: HubRef, cache: Path, why: str) -> str:
    folder = f"models--{ref.repo_id.replace('/', '--')}"
    revision = "" if ref.revision == "main" else f" --revision {ref.revision}"
    return (f"Hugging Face model {str(ref)!r} is not in the Hub cache {cache} and cannot be downloaded now ({why})."
            f" On a machine with network run `hf download {ref.repo_id}{revision}` (pip install huggingface_hub),"
            f" then copy its folder {folder} from that machine's Hub cache (~/.cache/huggingface/hub) into {cache}")
