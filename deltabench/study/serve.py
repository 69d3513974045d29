"""``deltabench study serve``: the study page over HTTP, its responses collected into a folder.

For a lab: participants' browsers POST their answers to ``/responses`` and each lands in
``--responses`` as ``<participant>.json`` (never overwritten: a second file of the same
participant gets a numbered name, which the analysis then reports as a duplicate). Localhost
only unless ``--host`` says otherwise. Everything else is a plain static file server of the
study folder (GET/HEAD only).
"""

from __future__ import annotations

import functools
import http.server
import json
import re
from pathlib import Path

from deltabench.study import RESPONSES_FORMAT

MAX_BYTES = 5 * 1024 * 1024


def _study(path: Path) -> dict:
    f = path / "study.json"
    if not f.is_file() or not (path / "index.html").is_file():
        raise ValueError(f"STUDY {path}: no study.json and index.html; make one with `deltabench study make`")
    try:
        return json.loads(f.read_text())
    except ValueError as e:
        raise ValueError(f"STUDY {path}: study.json is not valid JSON ({e}); make the study again") from None


class _Handler(http.server.SimpleHTTPRequestHandler):
    study_id = ""
    hidden: tuple[str, ...] = ()  # the responses folder's name when it is inside the study folder
    responses_dir: Path = Path(".")  # not `responses`: http.server's status-code table
    on_saved = staticmethod(print)

    def log_message(self, fmt, *args):  # quiet: one line per saved response instead
        pass

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_head(self):
        # The page needs index.html and img/ only: study.json (which method made which image, and
        # the run's scores) and the collected responses are not for participants' eyes.
        first = self.path.split("?")[0].lstrip("/").split("/")[0]
        if first in ("study.json", "responses", *self.hidden) or first.startswith("."):
            self.send_error(404, "not part of the study page")
            return None
        return super().send_head()

    def do_POST(self):  # noqa: N802 - http.server's naming
        if self.path.split("?")[0].rstrip("/") not in ("/responses",):
            return self._reply(404, {"error": "POST to /responses"})
        n = int(self.headers.get("Content-Length") or 0)
        if n <= 0 or n > MAX_BYTES:
            return self._reply(413, {"error": f"a response file must be 1 byte to {MAX_BYTES} bytes"})
        try:
            r = json.loads(self.rfile.read(n))
        except ValueError:
            return self._reply(400, {"error": "not JSON"})
        if not isinstance(r, dict) or r.get("format") != RESPONSES_FORMAT:
            return self._reply(400, {"error": "not a deltabench study response"})
        if r.get("study_id") != self.study_id:
            return self._reply(409, {"error": f"study {r.get('study_id')!r}, this server runs {self.study_id}"})
        pid = re.sub(r"[^A-Za-z0-9_.-]", "_", str(r.get("participant") or "anonymous"))[:64].lstrip(".") or "anonymous"
        self.responses_dir.mkdir(parents=True, exist_ok=True)
        path, k = self.responses_dir / f"{pid}.json", 1
        while True:  # exclusive create: a second file of one participant never replaces the first
            try:
                with open(path, "x") as f:
                    json.dump(r, f, indent=1)
                break
            except FileExistsError:
                k += 1
                path = self.responses_dir / f"{pid}.{k}.json"
        self.on_saved(f"saved {path}")
        return self._reply(201, {"saved": path.name})


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # a browser that closed its page mid-transfer: nothing to report
        super().handle_error(request, client_address)


def make_server(
    study: str | Path, port: int = 8000, host: str = "127.0.0.1", responses: str | Path | None = None, log=print
) -> http.server.ThreadingHTTPServer:
    study = Path(study)
    meta = _study(study)
    where = Path(responses) if responses else study / "responses"
    try:
        hidden = (where.resolve().relative_to(study.resolve()).parts[0],)
    except (ValueError, IndexError):
        hidden = ()
    if hidden == () and where.resolve() == study.resolve():
        raise ValueError(f"--responses {where}: give a folder other than the study folder itself")
    handler = type(
        "StudyHandler",
        (_Handler,),
        {"study_id": meta["study_id"], "responses_dir": where, "hidden": hidden, "on_saved": staticmethod(log)},
    )
    try:
        return _Server((host, port), functools.partial(handler, directory=str(study)))
    except OSError as e:
        raise ValueError(
            f"--host {host} --port {port}: cannot listen there ({e.strerror}); give another --port"
        ) from None


def serve(
    study: str | Path, port: int = 8000, host: str = "127.0.0.1", responses: str | Path | None = None, log=print
) -> None:
    server = make_server(study, port, host, responses, log)
    h, p = server.server_address[:2]
    where = Path(responses) if responses else Path(study) / "responses"
    log(f"study page at http://{h}:{p}/index.html ; responses go to {where}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    finally:
        server.server_close()
