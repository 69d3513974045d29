"""`deltabench weights`: the registry, fetch (against a real HTTP server on 127.0.0.1), verify."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import threading
import zipfile
from pathlib import Path

import pytest

from deltabench import weights as W
from deltabench.cli import main

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes) with Range support. ``server.drop_after``
    (path -> K) cuts the connection after K body bytes on the first request for that path;
    ``server.ignore_range`` answers 200 to Range requests. Every request is logged."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            start = int(m.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", srv.content_type)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        k = srv.drop_after.pop(self.path, None)
        if k is not None:
            # promise the whole body, send K bytes, then cut the connection
            self.wfile.write(body[start : start + k])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.drop_after, srv.log = {}, {}, []
    srv.ignore_range, srv.content_type = False, "application/octet-stream"
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _registry(tmp_path: Path, server, **entries) -> Path:
    """A temp registry: ``name=dict(overrides)``; url defaults to ``<server>/<name>``."""
    files = []
    for name, over in entries.items():
        name = name.replace("__", ".")
        files.append(
            {
                "name": name,
                "url": f"{server.url}/{name}",
                "page": "https://example.org/page",
                "source": "test",
                "format": "bytes",
                "licence": "none",
                "used_by": {"test": "x"},
                **over,
            }
        )
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"format": 1, "files": files}))
    return path


def _fetch(name, d, reg, **kw):
    return W.fetch(name, d, reg=reg, backoff=0.01, timeout=10, log=lambda m: None, **kw)


def test_resume_after_dropped_connection_uses_range(tmp_path, server):
    server.files["/model.pt"] = PAYLOAD
    server.drop_after["/model.pt"] = 123_457
    reg = _registry(tmp_path, server, model__pt={"sha256": SHA, "size": len(PAYLOAD)})
    d = tmp_path / "w"
    path = _fetch("model.pt", d, reg)
    assert path == d / "model.pt" and path.read_bytes() == PAYLOAD
    assert server.log == [("/model.pt", None), ("/model.pt", "bytes=123457-")]
    assert not (d / "model.pt.part").exists()
    assert W.verify("model.pt", d, reg).status == "ok"


def test_server_ignoring_range_restarts_cleanly(tmp_path, server):
    server.files["/model.pt"] = PAYLOAD
    server.drop_after["/model.pt"] = 50_000
    server.ignore_range = True
    reg = _registry(tmp_path, server, model__pt={"sha256": SHA})
    path = _fetch("model.pt", tmp_path, reg)
    assert path.read_bytes() == PAYLOAD  # not 50 000 stale bytes + the whole file
    assert len(server.log) == 2 and server.log[1][1] == "bytes=50000-"


def test_gives_up_after_retries_and_keeps_part_for_resume(tmp_path, server, monkeypatch):
    server.files["/model.pt"] = PAYLOAD
    reg = _registry(tmp_path, server, model__pt={"sha256": SHA})
    orig = _Handler.do_GET

    def always_drop(self):  # every request is cut after 1000 bytes
        self.server.drop_after[self.path] = 1000
        orig(self)

    monkeypatch.setattr(_Handler, "do_GET", always_drop)
    with pytest.raises(W.WeightsError, match="after 2 attempts.*resumes"):
        _fetch("model.pt", tmp_path, reg, retries=1)
    monkeypatch.setattr(_Handler, "do_GET", orig)
    assert not (tmp_path / "model.pt").exists()
    assert (tmp_path / "model.pt.part").stat().st_size == 2000
    # the next run resumes from the kept bytes
    path = _fetch("model.pt", tmp_path, reg)
    assert path.read_bytes() == PAYLOAD and server.log[-1][1] == "bytes=2000-"


def test_checksum_mismatch_deletes_part_and_names_both_hashes(tmp_path, server):
    wrong = bytes(len(PAYLOAD))
    server.files["/model.pt"] = wrong
    reg = _registry(tmp_path, server, model__pt={"sha256": SHA})
    with pytest.raises(W.WeightsError) as e:
        _fetch("model.pt", tmp_path, reg)
    assert SHA in str(e.value) and hashlib.sha256(wrong).hexdigest() in str(e.value)
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "model.pt.part").exists()


def test_wrong_size_is_refused(tmp_path, server):
    server.files["/model.pt"] = PAYLOAD[:-1]
    reg = _registry(tmp_path, server, model__pt={"size": len(PAYLOAD)})
    with pytest.raises(W.WeightsError, match=f"expected {len(PAYLOAD)}"):
        _fetch("model.pt", tmp_path, reg)
    assert list(tmp_path.glob("model.pt*")) == []


def test_404_names_url_and_manual_download(tmp_path, server):
    reg = _registry(tmp_path, server, gone__pt={"sha256": SHA})
    with pytest.raises(W.WeightsError) as e:
        _fetch("gone.pt", tmp_path / "w", reg)
    msg = str(e.value)
    assert f"{server.url}/gone.pt" in msg and "404" in msg
    assert "by hand" in msg and str(tmp_path / "w" / "gone.pt") in msg
    assert len(server.log) == 1  # a 404 is not retried
    assert not (tmp_path / "w" / "gone.pt").exists()


def test_html_page_is_not_stored_as_weights(tmp_path, server):
    server.files["/model.pt"] = b"<html>quota exceeded</html>"
    server.content_type = "text/html; charset=utf-8"
    reg = _registry(tmp_path, server, model__pt={})
    with pytest.raises(W.WeightsError, match="HTML page"):
        _fetch("model.pt", tmp_path, reg)
    assert list(tmp_path.glob("model.pt*")) == []


def test_sha256_prefix(tmp_path, server):
    server.files["/pt_inception-x.pth"] = PAYLOAD
    reg = _registry(tmp_path, server, **{"pt_inception-x__pth": {"sha256": SHA[:8]}})
    path = _fetch("pt_inception-x.pth", tmp_path, reg)
    assert W.verify("pt_inception-x.pth", tmp_path, reg).status == "ok"
    # the full digest of the verified file is kept for loaders' cache keys
    side = tmp_path / "pt_inception-x.pth.sha256"
    assert side.read_text() == f"{SHA}  pt_inception-x.pth\n"
    bad = _registry(tmp_path, server, **{"pt_inception-x__pth": {"sha256": "0" * 8}})
    res = W.verify("pt_inception-x.pth", tmp_path, bad)
    assert res.status == "sha256 mismatch" and "prefix" in res.message and res.found == SHA
    assert not side.exists()  # no longer vouched for
    path.unlink()
    with pytest.raises(W.WeightsError, match="sha256 prefix expected 00000000"):
        _fetch("pt_inception-x.pth", tmp_path, bad)


def test_unpublished_sha_is_recorded_then_enforced(tmp_path, server):
    server.files["/model.pt"] = PAYLOAD
    reg = _registry(tmp_path, server, model__pt={})
    with pytest.warns(UserWarning, match="no sha256 is published"):
        path = _fetch("model.pt", tmp_path, reg)
    side = tmp_path / "model.pt.sha256"
    assert side.read_text() == f"{SHA}  model.pt\n"
    assert W.verify("model.pt", tmp_path, reg).status == "ok"
    path.write_bytes(PAYLOAD[::-1])
    res = W.verify("model.pt", tmp_path, reg)
    assert res.status == "sha256 mismatch" and res.expected == SHA and "recorded" in res.message
    # a file placed by hand, first verify: records with a warning
    side.unlink()
    with pytest.warns(UserWarning, match="recorded"):
        assert W.verify("model.pt", tmp_path, reg).status == "recorded"
    assert side.read_text().split()[0] == hashlib.sha256(PAYLOAD[::-1]).hexdigest()


def test_present_file_is_verified_not_downloaded_again(tmp_path, server):
    server.files["/model.pt"] = PAYLOAD
    reg = _registry(tmp_path, server, model__pt={"sha256": SHA})
    (tmp_path / "model.pt").write_bytes(PAYLOAD)
    _fetch("model.pt", tmp_path, reg)
    assert server.log == []
    (tmp_path / "model.pt").write_bytes(b"corrupt")
    with pytest.raises(W.WeightsError, match="--force"):
        _fetch("model.pt", tmp_path, reg)
    _fetch("model.pt", tmp_path, reg, force=True)
    assert (tmp_path / "model.pt").read_bytes() == PAYLOAD and len(server.log) == 1


def test_archive_members_are_extracted_and_resolved(tmp_path, server):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("buffalo_l/w600k_r50.onnx", b"onnx-bytes")
        z.writestr("buffalo_l/genderage.onnx", b"not wanted")
    server.files["/buffalo_l.zip"] = buf.getvalue()
    reg = _registry(
        tmp_path,
        server,
        buffalo_l__zip={"members": ["w600k_r50.onnx"], "sha256": hashlib.sha256(buf.getvalue()).hexdigest()},
    )
    with pytest.raises(W.MissingWeightsError, match="weights fetch buffalo_l.zip"):
        W.path_of("w600k_r50.onnx", tmp_path, reg)
    _fetch("buffalo_l.zip", tmp_path, reg)
    onnx = W.path_of("w600k_r50.onnx", tmp_path, reg)
    assert onnx == tmp_path / "w600k_r50.onnx" and onnx.read_bytes() == b"onnx-bytes"
    assert not (tmp_path / "genderage.onnx").exists() and not (tmp_path / "buffalo_l").exists()
    onnx.unlink()
    assert W.verify("buffalo_l.zip", tmp_path, reg).status == "members missing"


def test_path_of_and_weights_dir(tmp_path, server, monkeypatch):
    reg = _registry(tmp_path, server, model__pt={"sha256": SHA, "size": len(PAYLOAD)})
    monkeypatch.delenv("DELTABENCH_WEIGHTS", raising=False)
    monkeypatch.delenv("DELTABENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.weights_dir() == tmp_path / "xdg" / "deltabench" / "weights"
    monkeypatch.setenv("DELTABENCH_WEIGHTS", str(tmp_path / "env"))
    assert W.weights_dir() == tmp_path / "env"
    assert W.weights_dir(tmp_path / "flag") == tmp_path / "flag"
    with pytest.raises(W.MissingWeightsError) as e:
        W.path_of("model.pt", reg=reg)
    assert "deltabench weights fetch model.pt" in str(e.value) and str(tmp_path / "env" / "model.pt") in str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "model.pt").write_bytes(PAYLOAD[:10])
    # never refused by its size alone (the loader reads what it holds); verify says it is wrong
    assert W.path_of("model.pt", reg=reg) == tmp_path / "env" / "model.pt"
    assert W.verify("model.pt", reg=reg).status == "wrong size"
    (tmp_path / "env" / "model.pt").write_bytes(PAYLOAD)
    assert W.path_of("model.pt", reg=reg) == tmp_path / "env" / "model.pt"
    with pytest.raises(W.WeightsError, match="not in the weights registry"):
        W.path_of("nope.pt", reg=reg)


def test_verify_and_list_cli_exit_codes(tmp_path, server, capsys):
    server.files["/a.pt"] = PAYLOAD
    reg = _registry(tmp_path, server, a__pt={"sha256": SHA}, b__pt={"sha256": SHA})
    d = tmp_path / "w"
    args = ["--dir", str(d), "--registry", str(reg)]
    assert main(["weights", "verify", *args]) == 1
    out = capsys.readouterr().out
    assert re.search(r"a\.pt\s+missing", out) and re.search(r"b\.pt\s+missing", out)
    assert main(["weights", "fetch", "a.pt", *args]) == 0
    assert main(["weights", "verify", "a.pt", *args]) == 0
    assert re.search(r"a\.pt\s+ok\s+" + SHA, capsys.readouterr().out)
    (d / "b.pt").write_bytes(b"tampered")
    assert main(["weights", "verify", *args]) == 1
    out = capsys.readouterr().out
    assert re.search(r"b\.pt\s+sha256 mismatch", out) and "1 of 2 files ok" in out
    assert main(["weights", "list", *args]) == 0
    out = capsys.readouterr().out
    assert re.search(r"a\.pt\s+\?\s+test: x\s+present", out) and re.search(r"b\.pt\s+\?\s+test: x\s+present", out)
    assert main(["weights", "verify", "zzz.pt", *args]) == 2
    assert "not in the weights registry" in capsys.readouterr().err


def test_registry_errors_are_clear(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(
        json.dumps(
            {
                "format": 1,
                "files": [
                    {
                        "name": "x.pt",
                        "url": None,
                        "page": "p",
                        "source": "s",
                        "format": "f",
                        "licence": "l",
                        "colour": "red",
                    }
                ],
            }
        )
    )
    with pytest.raises(ValueError, match="unknown keys.*colour"):
        W.registry(p)
    p.write_text(
        json.dumps(
            {
                "format": 1,
                "files": [{"name": "x.pt", "url": None, "page": "p", "source": "s", "format": "f", "licence": "l"}],
            }
        )
    )
    with pytest.raises(ValueError, match="'manual' must say"):
        W.registry(p)
    p.write_text(
        json.dumps(
            {
                "format": 1,
                "files": [
                    {
                        "name": "x.pt",
                        "url": "http://h/x",
                        "page": "p",
                        "source": "s",
                        "format": "f",
                        "licence": "l",
                        "sha256": "XYZ",
                    }
                ],
            }
        )
    )
    with pytest.raises(ValueError, match="sha256 must be"):
        W.registry(p)


def test_packaged_registry_covers_the_real_domains():
    reg = W.registry()
    roles = {
        d: {role.split()[0] for f in reg.files for dd, role in f.used_by.items() if dd == d} for d in reg.domains()
    }
    assert roles["ffhq"] == {"generator", "encoder", "clip", "identity", "identity_loss", "fid"}
    for d in ("lsun-cat", "lsun-church", "lsun-horse"):
        assert {"generator", "clip", "fid"} <= roles[d]
    for f in reg.files:
        assert f.url or f.manual, f.name
        assert f.licence and f.page.startswith("https://")
    # published hashes are where the source publishes them
    fid = reg["pt_inception-2015-12-05-6726825d.pth"]
    assert fid.sha256 == "6726825d" and fid.sha256_is_prefix and fid.url.endswith(fid.name)
    oa = reg["ViT-B-32.pt"]
    assert oa.sha256 == oa.url.split("/")[-2]  # open_clip's convention for openaipublic URLs
    clip = reg["ViT-B-32-quickgelu-openai.safetensors"]
    assert clip.url.endswith("open_clip_model.safetensors") and "quick_gelu" in clip.source
    assert reg.resolve("w600k_r50.onnx") == (reg["buffalo_l.zip"], "w600k_r50.onnx")
    # ffhq needs about 2.8 GB (exact where published, estimates elsewhere)
    total = sum(f.planned_bytes() for f in reg.for_domain("ffhq"))
    assert 2.5e9 < total < 3.2e9
