"""Run the pack's workflows headless through ComfyUI's HTTP API, and convert workflows between formats.

Standard library only. Use it from the command line:

    python tools/comfy_client.py run workflows/api/pixels_single_exemplar_sd15.json --server http://127.0.0.1:8188
    python tools/comfy_client.py run workflows/pixels_single_exemplar_sd15.json --seed 7 --out results/
    python tools/comfy_client.py run WORKFLOW --set 12.steps=20 --set 3.text="a beach"

``run`` accepts both formats (UI JSON saved from the ComfyUI menu, or API JSON), uploads the images that
``LoadImage`` nodes name from ``--inputs`` (default: ``workflows/inputs`` next to this file), queues the prompt,
waits for it, and saves every output image to ``--out``/<subfolder>/<filename>. File names are confined: an image
name that would read from outside ``--inputs`` (absolute, ``..``, a symlink out, a backslash or drive letter) is
refused before anything is uploaded (exit code 2), and an output name from the server that would land outside
``--out`` is not saved (the others are; exit code 2 at the end): see ``safe_input_path`` and ``safe_output_path``.
``--comfyui PATH`` starts a ComfyUI from that folder for the run (CPU or GPU, whatever that install does by
default) and stops it afterwards.

Or as a library: ``Client(url).run(prompt)``, ``ui_to_api(ui, object_info)``, ``api_to_ui(api, object_info)``.
"""
from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import pathlib
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

REPO = pathlib.Path(__file__).resolve().parent.parent
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


class WorkflowError(RuntimeError):
    """ComfyUI refused or failed a prompt; the message carries ComfyUI's own error text."""


class UnsafePathError(ValueError):
    """A file name from a workflow or from the server would reach outside its folder; nothing was read or written."""


# ----------------------------------------------------------------------------------------------
# File-name safety: what a workflow or a server names stays inside --inputs / --out
# ----------------------------------------------------------------------------------------------

def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _name_parts(value, what: str) -> list[str]:
    """The '/'-separated parts of a relative name (``.`` and empty parts dropped), or UnsafePathError saying why
    ``value`` is not one: not a string, a control character (NUL, CR, LF, ...), a backslash, absolute, a drive
    letter, or a ``..`` part. ``what`` names the value in the message ("name", "subfolder", "file name")."""
    if not isinstance(value, str):
        raise UnsafePathError(f"the {what} is not a string")
    if _has_control(value):
        raise UnsafePathError(f"the {what} contains a control character such as NUL, CR or LF")
    if "\\" in value:
        raise UnsafePathError(f"the {what} contains a backslash")
    if value.startswith("/"):
        raise UnsafePathError(f"the {what} is an absolute path")
    if pathlib.PureWindowsPath(value).drive:
        raise UnsafePathError(f"the {what} has a drive letter")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"the {what} contains a '..' part")
    return parts


def _inside(base: pathlib.Path, parts: list[str]) -> pathlib.Path:
    """``base/parts`` resolved (symlinks followed), or UnsafePathError when that is not strictly inside ``base``."""
    path = base.joinpath(*parts).resolve()
    try:
        rel = path.relative_to(base)
    except ValueError:
        raise UnsafePathError(f"it resolves to {path}") from None
    if not rel.parts:
        raise UnsafePathError("it names the folder itself")
    return path


def safe_input_path(inputs_dir, name) -> pathlib.Path:
    """The resolved local file a ``LoadImage`` image ``name`` (``a.png``, ``sub/a.png``) means in ``inputs_dir``.

    Raises UnsafePathError unless the name is relative, has no ``..`` part, backslash, drive letter or control
    character, and resolves (symlinks followed) to a path strictly inside the resolved ``inputs_dir``. The file
    need not exist."""
    base = pathlib.Path(inputs_dir).resolve()
    try:
        return _inside(base, _name_parts(name, "name"))
    except UnsafePathError as e:
        raise UnsafePathError(f"image name {name!r} is not inside the inputs folder {base} ({e})") from None


def safe_output_path(out_dir, subfolder, filename) -> pathlib.Path:
    """The resolved path ``out_dir/subfolder/filename`` where an output image the server names is saved.

    ``subfolder`` may be empty or a relative path; ``filename`` must be a plain file name (no ``/``). Raises
    UnsafePathError when either is absolute, has a ``..`` part, a backslash, a drive letter or a control
    character (NUL, CR, LF, ...), or when the result (symlinks followed) is not strictly inside the resolved
    ``out_dir``."""
    base = pathlib.Path(out_dir).resolve()
    try:
        sub = _name_parts(subfolder if subfolder is not None else "", "subfolder")
        name = _name_parts(filename, "file name")
        if name != [filename]:
            raise UnsafePathError("the file name is not a plain file name" if filename else "the file name is empty")
        return _inside(base, sub + name)
    except UnsafePathError as e:
        raise UnsafePathError(f"output image {filename!r} (subfolder {subfolder!r}) is not inside the output "
                              f"folder {base} ({e})") from None


def _form_filename(name: str) -> str:
    """The ``filename`` parameter(s) of a multipart Content-Disposition header for ``name``, safe to send.

    ``"`` and ``\\`` are backslash-quoted; CR, LF, NUL and other control characters are refused (ValueError);
    non-ASCII characters are percent-encoded as UTF-8 in ``filename`` (RFC 7578 section 4.2) and the exact name
    is added as ``filename*=UTF-8''...`` (RFC 5987), which ComfyUI's server (aiohttp) prefers."""
    if not isinstance(name, str) or not name or _has_control(name):
        raise ValueError(f"upload file name {name!r} is empty or contains a control character such as CR, LF or "
                         "NUL; refusing to send it")
    plain = "".join(c if c.isascii() else urllib.parse.quote(c, safe="") for c in name)
    out = 'filename="' + plain.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if not name.isascii():
        out += "; filename*=UTF-8''" + urllib.parse.quote(name, safe="")
    return out


# ----------------------------------------------------------------------------------------------
# HTTP client
# ----------------------------------------------------------------------------------------------

class Client:
    def __init__(self, url: str = "http://127.0.0.1:8188", timeout: float = 600.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def _req(self, path: str, data: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read()

    def get_json(self, path: str):
        return json.loads(self._req(path))

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def upload(self, path, name: str | None = None, subfolder: str = "") -> str:
        """Upload an image into ComfyUI's input folder, or its ``subfolder`` (overwriting a file of that name);
        returns the name the server stored (``subfolder/name`` when in a subfolder). A ``name`` with a control
        character (CR, LF, ...) raises ValueError before anything is sent; see :func:`_form_filename`."""
        path = pathlib.Path(path)
        name = name or path.name
        disposition = _form_filename(name)
        if _has_control(subfolder):
            raise ValueError(f"upload subfolder {subfolder!r} contains a control character; refusing to send it")
        boundary = uuid.uuid4().hex
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if _has_control(ctype) or '"' in ctype:
            ctype = "application/octet-stream"
        fields = [("overwrite", "true")] + ([("subfolder", subfolder)] if subfolder else [])
        body = b"".join([
            *(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
              for k, v in fields),
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; {disposition}\r\n"
            f"Content-Type: {ctype}\r\n\r\n".encode(), path.read_bytes(), f"\r\n--{boundary}--\r\n".encode()])
        out = json.loads(self._req("/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        return out["name"] if not out.get("subfolder") else f"{out['subfolder']}/{out['name']}"

    def queue(self, prompt: dict) -> str:
        data = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        try:
            out = json.loads(self._req("/prompt", data, {"Content-Type": "application/json"}))
        except urllib.error.HTTPError as e:
            raise WorkflowError(_validation_text(e.read())) from None
        return out["prompt_id"]

    def wait(self, prompt_id: str, timeout: float | None = None) -> dict:
        """Poll /history until the prompt ends; returns its history entry or raises WorkflowError."""
        end = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < end:
            hist = self.get_json(f"/history/{prompt_id}")
            if prompt_id in hist:
                entry = hist[prompt_id]
                status = entry.get("status", {})
                if status.get("status_str") == "error" or not status.get("completed", True):
                    raise WorkflowError(_execution_text(status))
                return entry
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout or self.timeout:.0f} s")

    def run(self, prompt: dict, timeout: float | None = None) -> dict:
        """Queue an API-format prompt, wait, and return its ``outputs`` (node id -> UI output dict)."""
        return self.wait(self.queue(prompt), timeout)["outputs"]

    def run_watched(self, prompt: dict, timeout: float | None = None, on_event=None) -> tuple[dict, list]:
        """As :meth:`run`, following the prompt on the websocket: returns ``(outputs, events)`` where events are
        the messages about this prompt (progress, executing, ...) and the binary preview frames sent meanwhile.
        ``on_event(msg)`` is called for each as it arrives."""
        ws = Events(self.url, self.client_id)
        events = []
        try:
            pid = self.queue(prompt)
            end = time.monotonic() + (timeout or self.timeout)
            while time.monotonic() < end:
                msg = ws.next(timeout=max(1.0, end - time.monotonic()))
                if msg is None:
                    break
                data = msg.get("data") if isinstance(msg.get("data"), dict) else {}
                if msg["type"] != "binary" and data.get("prompt_id", pid) != pid:
                    continue
                events.append(msg)
                if on_event:
                    on_event(msg)
                if msg["type"] in ("execution_success", "execution_error", "execution_interrupted") or (
                        msg["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == pid):
                    break
        finally:
            ws.close()
        return self.wait(pid, timeout)["outputs"], events

    def download(self, image: dict) -> bytes:
        q = urllib.parse.urlencode({k: image.get(k, "") for k in ("filename", "subfolder", "type")})
        return self._req(f"/view?{q}")

    def interrupt(self) -> None:
        self._req("/interrupt", b"{}", {"Content-Type": "application/json"})


class Events:
    """ComfyUI's websocket for one client id (RFC 6455, just what ComfyUI sends: whole text and binary frames).

    ``next(timeout)`` returns a JSON message as a dict, or a binary one as ``{"type": "binary", "event": N,
    "size": bytes}`` (event 1 and 4 are latent previews), or None on timeout or when the server closes."""

    def __init__(self, url: str, client_id: str):
        u = urllib.parse.urlparse(url)
        host = u.netloc.rpartition("@")[2]
        if _has_control(host) or _has_control(client_id) or " " in client_id:
            raise ValueError(f"websocket: refusing a host {host!r} or client id {client_id!r} with control characters")
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {host}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                self.close()
                raise ConnectionError("websocket handshake: the server closed the connection")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            self.close()
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def next(self, timeout: float = 60.0):
        self.sock.settimeout(timeout)
        try:
            payload, opcode = b"", None
            while True:
                b0, b1 = self._read(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack(">H", self._read(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", self._read(8))[0]
                mask = self._read(4) if b1 & 0x80 else None
                data = self._read(n)
                if mask:
                    data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
                op = b0 & 0x0F
                if op == 8:
                    return None
                if op in (9, 10):  # ping/pong: ComfyUI sends none; ignore rather than answer
                    continue
                opcode = opcode if op == 0 else op
                payload += data
                if b0 & 0x80:
                    break
        except (socket.timeout, ConnectionError, OSError):
            return None
        if opcode == 2:
            return {"type": "binary", "event": struct.unpack(">I", payload[:4])[0], "size": len(payload)}
        return json.loads(payload)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _validation_text(raw: bytes) -> str:
    try:
        err = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
    lines = [err.get("error", {}).get("message", "prompt rejected")]
    for nid, node in (err.get("node_errors") or {}).items():
        for e in node.get("errors", []):
            lines.append(f"node {nid} ({node.get('class_type')}): {e.get('message')}: {e.get('details')}")
    return "\n".join(lines)


def _execution_text(status: dict) -> str:
    for kind, msg in status.get("messages", []):
        if kind in ("execution_error", "execution_interrupted"):
            return (f"{kind} in node {msg.get('node_id')} ({msg.get('node_type')}): "
                    f"{msg.get('exception_type', '')}: {msg.get('exception_message', '').strip()}")
    return f"prompt failed: {status}"


def output_images(outputs: dict) -> list[dict]:
    return [img for out in outputs.values() for img in out.get("images", []) if img.get("type") == "output"]


# ----------------------------------------------------------------------------------------------
# Workflow formats
# ----------------------------------------------------------------------------------------------

def is_ui(workflow: dict) -> bool:
    return isinstance(workflow.get("nodes"), list) and "links" in workflow


def _inputs(spec: dict) -> list[tuple[str, str, dict]]:
    """(name, type, options) of a node's inputs in the order the frontend lays out widgets."""
    out = []
    for section in ("required", "optional"):
        for name, entry in (spec["input"].get(section) or {}).items():
            typ, opts = entry[0], dict(entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {})
            if isinstance(typ, list):
                typ, opts["options"] = "COMBO", typ
            out.append((name, typ, opts))
    return out


def _default(typ: str, opts: dict):
    if "default" in opts:
        return opts["default"]
    if typ == "COMBO" and opts.get("options"):
        return opts["options"][0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(typ)


def with_defaults(api: dict, object_info: dict) -> dict:
    """The prompt with every widget input it leaves out set to its default (what the editor would store)."""
    out = json.loads(json.dumps(api))
    for node in out.values():
        for name, typ, opts in _inputs(object_info[node["class_type"]]):
            if _is_widget(typ, opts) and name not in node["inputs"]:
                node["inputs"][name] = _default(typ, opts)
    return out


def _is_widget(typ: str, opts: dict) -> bool:
    return typ in WIDGET_TYPES and not opts.get("forceInput")


def _extra_widget_values(name: str, typ: str, opts: dict) -> int:
    """How many hidden values the frontend stores after this widget's own (seed control, upload button)."""
    if opts.get("control_after_generate") or (typ == "INT" and name in ("seed", "noise_seed")):
        return 1
    if opts.get("image_upload"):
        return 1
    return 0


def _node_height(spec: dict) -> int:
    """About the body height (title bar excluded) ComfyUI's frontend gives a loaded node of this type: 20 px per
    row of link slots, 24 px per widget (the seed-control and upload widgets count), 54 px more per multiline text
    box, 220 px for the preview of an image-upload node, and a little padding."""
    slots, widgets, extra = 0, 0, 0
    for name, typ, opts in _inputs(spec):
        if _is_widget(typ, opts):
            widgets += 1 + _extra_widget_values(name, typ, opts)
            extra += 54 if typ == "STRING" and opts.get("multiline") else 0
            extra += 220 if opts.get("image_upload") else 0
        else:
            slots += 1
    rows = max(slots, len(spec["output"]))
    return 20 * rows + (24 * widgets + extra + 8 if widgets else 0) + 6


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to an API prompt, as ComfyUI's 'Export (API)' does for plain graphs."""
    links = {l[0]: l for l in ui["links"]}
    api = {}
    for node in sorted(ui["nodes"], key=lambda n: n["id"]):
        if node.get("mode", 0) in (2, 4):  # muted or bypassed
            continue
        spec = object_info.get(node["type"])
        if spec is None:
            raise WorkflowError(f"node {node['id']}: '{node['type']}' is not installed in this ComfyUI")
        linked = {i["name"]: i.get("link") for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs, pos = {}, 0
        for name, typ, opts in _inputs(spec):
            if name in linked:
                src = links[linked[name]]
                inputs[name] = [str(src[1]), src[2]]
            if _is_widget(typ, opts):
                if name not in linked and pos < len(values):
                    inputs[name] = values[pos]
                pos += 1 + _extra_widget_values(name, typ, opts)
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def api_to_ui(api: dict, object_info: dict) -> dict:
    """Lay an API prompt out as a UI-format workflow (columns by graph depth) that ComfyUI's editor loads."""
    ids = sorted(api, key=int)
    depth = {}

    def d(nid):
        if nid not in depth:
            ups = [v[0] for v in api[nid]["inputs"].values() if isinstance(v, list) and len(v) == 2]
            depth[nid] = 1 + max((d(u) for u in ups), default=-1)
        return depth[nid]

    for nid in ids:
        d(nid)
    nodes, links, tops = {}, [], {}
    for nid in ids:
        spec = object_info.get(api[nid]["class_type"])
        if spec is None:
            raise WorkflowError(f"node {nid}: '{api[nid]['class_type']}' is not installed in this ComfyUI")
        height = _node_height(spec)
        top = tops.get(depth[nid], 40)
        tops[depth[nid]] = top + height + 70  # 30 px title bar of the next node + 40 px gap
        outs = [{"name": n, "type": t, "links": [], "slot_index": i}
                for i, (t, n) in enumerate(zip(spec["output"], spec.get("output_name") or spec["output"]))]
        nodes[nid] = {"id": int(nid), "type": api[nid]["class_type"], "pos": [40 + 360 * depth[nid], top],
                      "size": [320, height], "flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": outs,
                      "properties": {"Node name for S&R": api[nid]["class_type"]}, "widgets_values": []}
    for order, nid in enumerate(sorted(ids, key=lambda n: (depth[n], int(n)))):
        nodes[nid]["order"] = order
    for nid in ids:
        node, given = nodes[nid], api[nid]["inputs"]
        spec = object_info[api[nid]["class_type"]]
        for name, typ, opts in _inputs(spec):
            value = given.get(name)
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                src, slot = value
                link_id = len(links) + 1
                entry = {"name": name, "type": typ, "link": link_id}
                if _is_widget(typ, opts):
                    entry["widget"] = {"name": name}
                node["inputs"].append(entry)
                nodes[src]["outputs"][slot]["links"].append(link_id)
                links.append([link_id, int(src), slot, int(nid), len(node["inputs"]) - 1,
                              nodes[src]["outputs"][slot]["type"]])
            elif not _is_widget(typ, opts) and name in given:
                raise WorkflowError(f"node {nid}: input '{name}' needs a link")
            elif not _is_widget(typ, opts):
                node["inputs"].append({"name": name, "type": typ, "link": None})
            if _is_widget(typ, opts):
                node["widgets_values"].append(value if name in given and not isinstance(value, list)
                                              else _default(typ, opts))
                if _extra_widget_values(name, typ, opts):
                    node["widgets_values"].append("image" if opts.get("image_upload") else "fixed")
    return {"last_node_id": max(int(i) for i in ids), "last_link_id": len(links), "nodes": list(nodes.values()),
            "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


def load_api(path, object_info: dict | None = None) -> dict:
    wf = json.loads(pathlib.Path(path).read_text())
    if is_ui(wf):
        if object_info is None:
            raise WorkflowError("a UI-format workflow needs the server's /object_info to convert")
        return ui_to_api(wf, object_info)
    return wf


def image_inputs(api: dict) -> list[str]:
    return sorted({n["inputs"]["image"] for n in api.values()
                   if n["class_type"] == "LoadImage" and isinstance(n["inputs"].get("image"), str)})


def upload_inputs(client: Client, api: dict, inputs_dir) -> dict[str, str]:
    """Upload the images ``LoadImage`` nodes name from ``inputs_dir`` (``sub/a.png`` into the server's input
    subfolder ``sub``) and point those nodes at the names the server stored; returns {workflow name: stored name}.

    Every name is checked with :func:`safe_input_path` first: an unsafe one raises UnsafePathError naming the node
    and the image before anything is read or uploaded. Names with no file in ``inputs_dir`` are left as they are
    (the server may have them)."""
    todo = {}
    for nid, node in api.items():
        name = node.get("inputs", {}).get("image") if node.get("class_type") == "LoadImage" else None
        if not isinstance(name, str):
            continue
        try:
            todo.setdefault(name, safe_input_path(inputs_dir, name))
        except UnsafePathError as e:
            raise UnsafePathError(f"node {nid} (LoadImage): {e}; nothing was uploaded") from None
    stored = {}
    for name, path in todo.items():
        if path.is_file():
            subfolder, _, base = "/".join(_name_parts(name, "name")).rpartition("/")
            stored[name] = client.upload(path, base, subfolder=subfolder)
    for node in api.values():
        if node.get("class_type") == "LoadImage" and node.get("inputs", {}).get("image") in stored:
            node["inputs"]["image"] = stored[node["inputs"]["image"]]
    return stored


def save_outputs(client: Client, outputs: dict, out_dir) -> tuple[list[pathlib.Path], list[str]]:
    """Download every output image of ``outputs`` to ``out_dir/<subfolder>/<filename>``.

    Each path is checked with :func:`safe_output_path`; an image that would land outside ``out_dir`` is neither
    downloaded nor written, and the others still are. Returns (paths written, one message per refused image)."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved, refused = [], []
    for nid, node_out in outputs.items():
        for img in (node_out.get("images") or [] if isinstance(node_out, dict) else []):
            if not isinstance(img, dict) or img.get("type") != "output":
                continue
            try:
                dest = safe_output_path(out, img.get("subfolder") or "", img.get("filename"))
            except UnsafePathError as e:
                refused.append(f"node {nid}: {e}; not saved")
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(client.download(img))
            saved.append(dest)
    return saved, refused


def set_value(api: dict, assignment: str) -> None:
    """Apply ``NODE.INPUT=VALUE`` (VALUE parsed as JSON where it parses, else a string)."""
    key, _, raw = assignment.partition("=")
    nid, _, name = key.partition(".")
    if nid not in api or not name:
        raise SystemExit(f"--set {assignment}: no node '{nid}' (nodes: {', '.join(sorted(api, key=int))})")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    api[nid]["inputs"][name] = value


def set_seed(api: dict, seed: int) -> None:
    for node in api.values():
        for name in ("seed", "noise_seed"):
            if isinstance(node["inputs"].get(name), int):
                node["inputs"][name] = seed


# ----------------------------------------------------------------------------------------------
# Starting a ComfyUI for a one-off run
# ----------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_comfyui(path, port: int, extra_args=(), log=None) -> subprocess.Popen:
    """Start ``python main.py`` in a ComfyUI folder on 127.0.0.1:port; returns once /object_info answers."""
    cmd = [sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(port), *extra_args]
    proc = subprocess.Popen(cmd, cwd=str(path), stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = Client(f"http://127.0.0.1:{port}")
    end = time.monotonic() + 300
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with code {proc.returncode} while starting (command: {' '.join(cmd)})")
        try:
            client.get_json("/system_stats")
            return proc
        except (OSError, ValueError):
            time.sleep(0.5)
    proc.terminate()
    raise TimeoutError("ComfyUI did not answer within 300 s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a workflow (UI or API JSON) and save its images")
    r.add_argument("workflow")
    r.add_argument("--server", default=os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188"))
    r.add_argument("--comfyui", help="start the ComfyUI in this folder for the run instead of using --server")
    r.add_argument("--comfyui-args", default="", help="extra arguments for that ComfyUI, e.g. '--cpu'")
    r.add_argument("--inputs", default=str(REPO / "workflows" / "inputs"), help="folder of the images to upload")
    r.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE")
    r.add_argument("--seed", type=int, help="set every seed/noise_seed input")
    r.add_argument("--out", default="pixels_outputs", help="folder for the output images")
    r.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args(argv)

    proc = None
    if args.comfyui:
        port = free_port()
        print(f"starting ComfyUI from {args.comfyui} on port {port} ...", flush=True)
        proc = start_comfyui(args.comfyui, port, args.comfyui_args.split())
        args.server = f"http://127.0.0.1:{port}"
    try:
        client = Client(args.server, args.timeout)
        api = load_api(args.workflow, client.object_info())
        for a in args.set:
            set_value(api, a)
        if args.seed is not None:
            set_seed(api, args.seed)
        try:
            upload_inputs(client, api, args.inputs)
        except UnsafePathError as e:
            print(f"refused: {e}", file=sys.stderr)
            return 2
        t0 = time.monotonic()

        def show(msg):
            d = msg.get("data", {})
            if msg["type"] == "progress":
                print(f"\r  node {d.get('node')} ({api.get(str(d.get('node')), {}).get('class_type', '?')}): "
                      f"step {d['value']}/{d['max']}   ", end="", flush=True)
            elif msg["type"] == "executing" and d.get("node") is not None:
                print(f"\n  running node {d['node']} ({api.get(str(d['node']), {}).get('class_type', '?')})",
                      end="", flush=True)
        try:
            outputs, _ = client.run_watched(api, on_event=show)
            print()
        except OSError:  # no websocket (a proxy in between): poll instead
            outputs = client.run(api)
        saved, refused = save_outputs(client, outputs, args.out)
        for path in saved:
            print(path)
        for msg in refused:
            print(f"refused: {msg}", file=sys.stderr)
        print(f"done in {time.monotonic() - t0:.1f} s")
        if refused:
            print(f"{len(refused)} output image(s) not saved: their names reach outside {args.out}", file=sys.stderr)
            return 2
    except WorkflowError as e:
        print(f"ComfyUI error: {e}", file=sys.stderr)
        return 1
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
