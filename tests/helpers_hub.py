"""A fake Hugging Face Hub on 127.0.0.1 for the tests (no test reaches the network).

It answers the requests huggingface_hub 2.x makes in `snapshot_download`:
`GET /api/models/{repo}/revision/{rev}` (commit sha), `GET /api/models/{repo}/tree/{rev}` (file
list with git and LFS ids), and `HEAD`/`GET /{repo}/resolve/{rev}/{file}` (X-Repo-Commit, ETag,
Content-Length). It never sends xet headers or `xetHash`, so the client uses plain HTTP.
huggingface_hub reads its environment at import time, so `serve_hub` sets the variables and
patches `huggingface_hub.constants` to match.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from huggingface_hub import constants

def is_lfs(name: str) -> bool:
    """Weights go through LFS on the Hub: their etag is the sha256 of the content."""
    return name == "model.safetensors" or name.endswith((".pt", ".bin"))


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def etag_of(name: str, data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() if is_lfs(name) else git_sha1(data)


class FakeHub:
    """A threaded HTTP server with the Hub's download endpoints, recording every request."""

    def __init__(self, repos: dict):
        self.repos = repos  # {repo: {"refs": {name: commit}, "commits": {commit: {file: bytes}}}}
        self.requests: list[tuple[str, str]] = []
        self.tamper: set[str] = set()  # files served with wrong bytes of the right size
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                hub.handle(self, body=False)

            def do_GET(self):
                hub.handle(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def fetched(self, name: str) -> int:
        return sum(1 for m, p in self.requests if m == "GET" and p.endswith("/" + name))

    def handle(self, h: BaseHTTPRequestHandler, body: bool):
        path = unquote(urlsplit(h.path).path)
        self.requests.append((h.command, path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6:  # api/models/ORG/NAME/{revision,tree}/REV
            repo, kind, rev = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
            commit = self.commit(h, repo, rev)
            if commit is None:
                return
            files = self.repos[repo]["commits"][commit]
            if kind == "revision":
                data = {"id": repo, "sha": commit, "siblings": [{"rfilename": f} for f in files]}
            else:
                data = [self.tree_entry(name, content) for name, content in files.items()]
            return self.send(h, 200, json.dumps(data).encode(), {"Content-Type": "application/json"}, body)
        if len(parts) >= 5 and parts[2] == "resolve":  # ORG/NAME/resolve/REV/FILE
            repo, rev, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            commit = self.commit(h, repo, rev)
            if commit is None:
                return
            content = self.repos[repo]["commits"][commit].get(name)
            if content is None:
                return self.send(h, 404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, body)
            headers = {"X-Repo-Commit": commit, "ETag": f'"{etag_of(name, content)}"'}
            if name in self.tamper:
                content = bytes(len(content))
            return self.send(h, 200, content, headers, body)
        self.send(h, 404, b"", {}, body)

    def commit(self, h, repo: str, rev: str) -> str | None:
        if repo not in self.repos:
            self.send(h, 404, b"", {"X-Error-Code": "RepoNotFound"}, h.command == "GET")
            return None
        commit = self.repos[repo]["refs"].get(rev, rev if rev in self.repos[repo]["commits"] else None)
        if commit is None:
            self.send(h, 404, b"", {"X-Error-Code": "RevisionNotFound"}, h.command == "GET")
        return commit

    @staticmethod
    def tree_entry(name: str, content: bytes) -> dict:
        entry = {"type": "file", "path": name, "size": len(content), "oid": git_sha1(content)}
        if is_lfs(name):
            entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 130}
        return entry

    @staticmethod
    def send(h, status: int, content: bytes, headers: dict, body: bool):
        h.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(content))}.items():
            h.send_header(key, value)
        h.end_headers()
        if body:
            h.wfile.write(content)


def hub_env(tmp_path: Path, url: str) -> dict[str, str]:
    home = tmp_path / "hf"
    return {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_ENDPOINT": url,
            "HF_HUB_DISABLE_TELEMETRY": "1"}


def serve_hub(tmp_path: Path, monkeypatch, repos: dict) -> FakeHub:
    """Start a FakeHub for ``repos`` and point huggingface_hub at it, with its cache under ``tmp_path``;
    the caller stops it."""
    server = FakeHub(repos)
    env = hub_env(tmp_path, server.url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_DISABLE_SYMLINKS"):
        monkeypatch.delenv(key, raising=False)
    # The same settings, as huggingface_hub would have read them at import time.
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", env["HF_HOME"])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # else it asks for /api/agent-harnesses
    return server


def go_offline(hub: FakeHub, monkeypatch):
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
