"""A Hugging Face Hub stand-in on 127.0.0.1 (the real Hub is out of reach in tests), and a Hub cache written by
hand in huggingface_hub's own layout (models--owner--name/{blobs, refs, snapshots})."""
from __future__ import annotations

import hashlib
import http.server
import os
import threading
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Serves `repos` {repo_id: {filename: bytes}} at /{repo}/resolve/{revision}/{filename} with the headers
    huggingface_hub reads (X-Repo-Commit, ETag, Content-Length, X-Error-Code on 404). Records request paths."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos, self.requests = repos, []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body: bool):
                hub.requests.append(self.path)
                parts = self.path.split("?")[0].strip("/").split("/")
                repo, rest = "/".join(parts[:2]), parts[2:]
                if repo not in hub.repos:
                    return self._missing("RepoNotFound")
                if len(rest) < 3 or rest[0] != "resolve" or rest[2] not in hub.repos[repo]:
                    return self._missing("EntryNotFound")
                data = hub.repos[repo][rest[2]]
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _missing(self, code: str):
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def write_cache(cache: Path, repo_id: str, files: dict[str, bytes], revision: str = "main",
                commit: str = COMMIT) -> Path:
    """Put `files` into a Hub cache as huggingface_hub lays it out: content-addressed blobs, a snapshot folder
    per commit with relative symlinks to them, and refs/<revision> holding the commit. -> the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot
