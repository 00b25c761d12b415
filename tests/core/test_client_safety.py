"""tools/comfy_client.py file safety: a workflow's LoadImage names cannot read outside --inputs, a server's output
names cannot write outside --out, and upload headers cannot be injected into.

``main(["run", ...])`` runs against a fake ComfyUI on 127.0.0.1 (``http.server`` in a thread): no ComfyUI, no torch,
no network beyond loopback. Its /ws answers 404, so the client falls back to polling /history (checked)."""
import email.parser
import email.policy
import json
import os
import re
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.core._client import LOAD_SAVE_INFO, load

cc = load("comfy_client_safety_under_test")

OBJECT_INFO = LOAD_SAVE_INFO


class FakeComfy:
    """Just what ``main(["run", ...])`` needs; records what it was sent."""

    def __init__(self, images=()):
        self.images = list(images)  # the history entry's output images
        self.uploads, self.prompts, self.views = [], [], []
        self.ws_requests = self.history_requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, obj):
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                u = urllib.parse.urlparse(self.path)
                if u.path == "/object_info":
                    return self._json(OBJECT_INFO)
                if u.path == "/ws":
                    fake.ws_requests += 1
                    return self.send_error(404)
                if u.path.startswith("/history/"):
                    fake.history_requests += 1
                    pid = u.path.rsplit("/", 1)[1]
                    return self._json({pid: {"outputs": {"9": {"images": fake.images}},
                                             "status": {"status_str": "success", "completed": True, "messages": []}}})
                if u.path == "/view":
                    q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
                    fake.views.append(q)
                    body = f"IMG:{q.get('subfolder', '')}/{q.get('filename', '')}".encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    return self.wfile.write(body)
                self.send_error(404)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/upload/image":
                    rec = fake.parse_upload(self.headers["Content-Type"], body)
                    fake.uploads.append(rec)
                    return self._json({"name": rec["filename"], "subfolder": rec["subfolder"], "type": "input"})
                if self.path == "/prompt":
                    fake.prompts.append(json.loads(body)["prompt"])
                    return self._json({"prompt_id": "p1", "number": 0, "node_errors": {}})
                self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def parse_upload(content_type: str, body: bytes) -> dict:
        """The form fields of a multipart body, as an RFC-abiding parser (Python's email package) reads them."""
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        rec = {"subfolder": "", "raw": body}
        for part in msg.iter_parts():
            field = part.get_param("name", header="content-disposition")
            if field == "image":
                rec["filename"] = part.get_filename()
                rec["headers"] = sorted(k.lower() for k in part.keys())
                rec["data"] = part.get_payload(decode=True)
            else:
                rec[field] = part.get_payload(decode=True).decode()
        return rec

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def fake():
    servers = []

    def make(images=()):
        servers.append(FakeComfy(images))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


def workflow(tmp_path, *image_names) -> str:
    """An API-format workflow: one LoadImage per name (node ids 1, 2, ...) and a SaveImage."""
    api = {str(i): {"class_type": "LoadImage", "inputs": {"image": n}} for i, n in enumerate(image_names, 1)}
    api["9"] = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(api))
    return str(path)


def run_main(server, wf, inputs, out) -> int:
    return cc.main(["run", wf, "--server", server.url, "--inputs", str(inputs), "--out", str(out), "--timeout", "30"])


def assert_polled(server):
    """The websocket was tried, refused, and the run went on by polling /history, once."""
    assert server.ws_requests == 1 and len(server.prompts) == 1 and server.history_requests >= 1


@pytest.fixture
def inputs(tmp_path):
    """tmp/inputs with good.png, sub/a.png and a symlink to ../secret.png (a real file beside the folder)."""
    d = tmp_path / "inputs"
    (d / "sub").mkdir(parents=True)
    (d / "good.png").write_bytes(b"good")
    (d / "sub" / "a.png").write_bytes(b"sub-a")
    (tmp_path / "secret.png").write_bytes(b"SECRET")
    (d / "link.png").symlink_to(tmp_path / "secret.png")
    return d


# ---------------------------------------------------------------------------------------------------------------
# the path functions
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, want", [
    ("a.png", "a.png"), ("sub/a.png", "sub/a.png"), ("./sub//a.png", "sub/a.png"), ('quo"te .png', 'quo"te .png'),
    ("link_in.png", "good.png"),  # a symlink that stays inside is fine
])
def test_safe_input_path_accepts(inputs, name, want):
    (inputs / "link_in.png").symlink_to(inputs / "good.png")
    assert cc.safe_input_path(inputs, name) == (inputs / want).resolve()


@pytest.mark.parametrize("name, why", [
    ("/etc/passwd", "absolute"), ("../secret.png", "'..'"), ("sub/../../secret.png", "'..'"), ("..", "'..'"),
    ("..\\secret.png", "backslash"), ("sub\\..\\..\\secret.png", "backslash"), ("\\\\server\\share\\x.png", "backslash"),
    ("C:\\Windows\\win.ini", "backslash"), ("C:/Windows/win.ini", "drive letter"), ("C:secret.png", "drive letter"),
    ("a\x00.png", "control character"), ("a\r\nb.png", "control character"), ("", "folder itself"),
    (".", "folder itself"), ("link.png", "resolves to"), ("linkdir/x.png", "resolves to"), (5, "not a string"),
])
def test_safe_input_path_refuses(inputs, tmp_path, name, why):
    (tmp_path / "elsewhere").mkdir()
    (inputs / "linkdir").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(cc.UnsafePathError, match=re.escape(why)) as e:
        cc.safe_input_path(inputs, name)
    assert isinstance(e.value, ValueError) and repr(name) in str(e.value) and "inputs folder" in str(e.value)


def test_safe_input_path_through_a_symlinked_inputs_folder(inputs, tmp_path):
    (tmp_path / "alias").symlink_to(inputs)
    assert cc.safe_input_path(tmp_path / "alias", "sub/a.png") == (inputs / "sub" / "a.png").resolve()
    with pytest.raises(cc.UnsafePathError):
        cc.safe_input_path(tmp_path / "alias", "link.png")


@pytest.mark.parametrize("subfolder, filename, want", [
    ("", "a.png", "a.png"), (None, "a.png", "a.png"), ("sub", "a.png", "sub/a.png"),
    ("sub/deeper", "a.png", "sub/deeper/a.png"), ("./sub/", "a.png", "sub/a.png"), ("", "we ird'\".png", "we ird'\".png"),
])
def test_safe_output_path_accepts(tmp_path, subfolder, filename, want):
    out = tmp_path / "out"
    assert cc.safe_output_path(out, subfolder, filename) == (out / want).resolve()


@pytest.mark.parametrize("subfolder, filename, why", [
    ("", "../../evil.png", "'..'"), ("", "/tmp/evil.png", "absolute"), ("", "..\\evil.png", "backslash"),
    ("../x", "a.png", "'..'"), ("sub/../..", "a.png", "'..'"), ("/abs", "a.png", "absolute"),
    ("sub\\..\\..", "a.png", "backslash"), ("C:", "a.png", "drive letter"), ("", "C:evil.png", "drive letter"),
    ("", "a\x00.png", "control character"), ("sub\r\n", "a.png", "control character"),
    ("", "a/b.png", "plain file name"), ("", "a.png/", "plain file name"), ("", ".", "plain file name"),
    ("", "", "empty"), ("", "..", "'..'"), ("", None, "not a string"), (3, "a.png", "not a string"),
    ("link", "a.png", "resolves to"), ("", "linked.png", "resolves to"),
])
def test_safe_output_path_refuses(tmp_path, subfolder, filename, why):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    (out / "linked.png").symlink_to(tmp_path / "elsewhere" / "target.png")
    with pytest.raises(cc.UnsafePathError, match=re.escape(why)) as e:
        cc.safe_output_path(out, subfolder, filename)
    assert isinstance(e.value, ValueError) and repr(filename) in str(e.value) and "output folder" in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# main: inputs
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["/etc/passwd", "../secret.png", "link.png", "..\\secret.png", "SECRET_ABS"])
def test_main_refuses_inputs_outside_the_folder(fake, inputs, tmp_path, capsys, bad):
    bad = str(tmp_path / "secret.png") if bad == "SECRET_ABS" else bad
    server = fake()
    rc = run_main(server, workflow(tmp_path, "good.png", bad), inputs, tmp_path / "out")
    err = capsys.readouterr().err
    assert rc == 2
    assert server.uploads == [] and server.prompts == []  # nothing uploaded, not even good.png; nothing queued
    assert f"node 2 (LoadImage): image name {bad!r} is not inside the inputs folder {inputs.resolve()}" in err
    assert "nothing was uploaded" in err


def test_main_uploads_subfolder_images_into_that_subfolder(fake, inputs, tmp_path):
    server = fake([{"filename": "r.png", "subfolder": "", "type": "output"}])
    rc = run_main(server, workflow(tmp_path, "sub/a.png", "good.png", "missing.png"), inputs, tmp_path / "out")
    assert rc == 0
    got = sorted((u["subfolder"], u["filename"], u["data"]) for u in server.uploads)
    assert got == [("", "good.png", b"good"), ("sub", "a.png", b"sub-a")]  # missing.png: left for the server
    prompt = server.prompts[0]
    assert [prompt[n]["inputs"]["image"] for n in "123"] == ["sub/a.png", "good.png", "missing.png"]
    assert_polled(server)


def test_main_escapes_a_quote_in_an_input_name(fake, inputs, tmp_path):
    (inputs / 'quo"te\\d.png').write_bytes(b"q")
    server = fake()
    assert run_main(server, workflow(tmp_path, 'quo"te\\d.png'), inputs, tmp_path / "out") == 2  # backslash: refused
    (inputs / 'quo"te.png').write_bytes(b"q")
    assert run_main(server, workflow(tmp_path, 'quo"te.png'), inputs, tmp_path / "out") == 0
    [up] = server.uploads
    assert up["filename"] == 'quo"te.png' and up["headers"] == ["content-disposition", "content-type"]


def test_main_refuses_a_crlf_input_name(fake, inputs, tmp_path, capsys):
    name = 'x.png"\r\nX-Injected: 1\r\nY: "z.png'
    (inputs / name).write_bytes(b"x")
    server = fake()
    assert run_main(server, workflow(tmp_path, name), inputs, tmp_path / "out") == 2
    assert server.uploads == [] and "control character" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Client.upload headers
# ---------------------------------------------------------------------------------------------------------------

def test_upload_quotes_quote_and_backslash(fake, tmp_path):
    server = fake()
    (tmp_path / "f.png").write_bytes(b"data")
    name = 'q"uo\\te.png'
    assert cc.Client(server.url).upload(tmp_path / "f.png", name) == name
    [up] = server.uploads
    assert up["filename"] == name and up["data"] == b"data"
    assert up["headers"] == ["content-disposition", "content-type"]


@pytest.mark.parametrize("name", ['x.png"\r\nX-Injected: 1\r\nY: "', "x\r\n.png", "x\n.png", "x\x00.png"])
def test_upload_refuses_control_characters_before_sending(fake, tmp_path, name):
    server = fake()
    (tmp_path / "f.png").write_bytes(b"data")
    with pytest.raises(ValueError, match="control character"):
        cc.Client(server.url).upload(tmp_path / "f.png", name)
    assert server.uploads == []


def test_upload_percent_encodes_non_ascii(fake, tmp_path):
    server = fake()
    (tmp_path / "f.png").write_bytes(b"data")
    cc.Client(server.url).upload(tmp_path / "f.png", "café.png")
    [up] = server.uploads
    line = next(ln for ln in up["raw"].split(b"\r\n") if ln.startswith(b'Content-Disposition: form-data; name="image"'))
    assert line.isascii()
    assert up["filename"] == "caf%C3%A9.png"  # RFC 7578 4.2 fallback
    ext = re.search(rb"filename\*=UTF-8''([^;\s]+)", line).group(1).decode()
    assert urllib.parse.unquote(ext) == "café.png"  # what ComfyUI's aiohttp prefers


# ---------------------------------------------------------------------------------------------------------------
# main: outputs
# ---------------------------------------------------------------------------------------------------------------

def test_main_saves_outputs_only_inside_out(fake, inputs, tmp_path, capsys):
    tag = uuid.uuid4().hex[:8]
    out = tmp_path / "a" / "out"
    bad = [
        ("", f"../../evil_{tag}.png"), ("", f"../../../evil_{tag}.png"), ("", str(tmp_path / f"abs_evil_{tag}.png")),
        ("", f"..\\evil_{tag}.png"), ("../x", f"sub_evil_{tag}.png"), (str(tmp_path / "absdir"), f"d_evil_{tag}.png"),
        ("", f"nul_evil_{tag}\x00.png"),
    ]
    good = [("run1", "same.png"), ("run2", "same.png"), ("", "top.png"), ("deep/er", "d.png")]
    images = [{"filename": f, "subfolder": s, "type": "output"} for s, f in bad[:3] + good[:2] + bad[3:] + good[2:]]
    images.append({"filename": f"../temp_{tag}.png", "subfolder": "", "type": "temp"})  # previews: not saved at all
    server = fake(images)
    rc = run_main(server, workflow(tmp_path, "good.png"), inputs, out)
    err = capsys.readouterr().err
    assert rc == 2
    assert_polled(server)
    for s, f in good:
        assert (out / s / f).read_bytes() == f"IMG:{s}/{f}".encode()
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(f"{s}/{f}".lstrip("/") for s, f in good)
    everything = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert {p for p in everything if not (p.is_relative_to(out) or p.is_relative_to(inputs))} == {
        tmp_path / "wf.json", tmp_path / "secret.png"}
    for d in (tmp_path.parent, tmp_path.parent.parent):
        assert not [n for n in os.listdir(d) if tag in n]
    assert sorted((v["subfolder"], v["filename"]) for v in server.views) == sorted(good)  # bad ones not downloaded
    for s, f in bad:
        assert f"node 9: output image {f!r} (subfolder {s!r}) is not inside the output folder {out.resolve()}" in err
    assert err.count("; not saved") == len(bad)
