"""Run the pack's workflows headless through ComfyUI's HTTP API, and convert workflows between formats.

Needs only what ComfyUI itself installs (aiohttp; the format conversion alone needs nothing). From the command line:

    python tools/comfy_client.py run example_workflows/api/pixels_single_exemplar_sd15.json --server http://HOST:8188
    python tools/comfy_client.py run example_workflows/pixels_single_exemplar_sd15.json --seed 7 --out results/
    python tools/comfy_client.py run WORKFLOW --set 12.steps=20 --set 3.text="a beach"
    python tools/comfy_client.py run WORKFLOW --server https://comfy.example:8443 --cafile my-ca.pem

``run`` accepts both formats (UI JSON saved from the ComfyUI menu, or API JSON), uploads the images that
``LoadImage`` nodes name from ``--inputs`` (default: the pack's ``example_workflows/inputs``), queues the prompt,
follows it on the websocket (re-opened with the same client id when it drops; /history is polled when there is
none), and saves every output image to ``--out``/<subfolder>/<filename>. ``https://`` servers are verified
against the system's CAs or ``--cafile``; ``--insecure`` skips the check. Ctrl-C stops this prompt only
(interrupted when it runs, deleted from the queue when it waits; exit code 130). File names are
confined: an image name that would read from outside ``--inputs`` (absolute, ``..``, a symlink out, a backslash
or drive letter) is refused before anything is uploaded (exit code 2), and an output name from the server that
would land outside ``--out`` is not saved (the others are; exit code 2 at the end): see ``safe_input_path`` and
``safe_output_path``. ``--comfyui PATH`` starts a ComfyUI from that folder for the run (CPU or GPU, whatever that
install does by default) and stops it afterwards.

Or as a library: ``Client(url).run(prompt)``, ``ui_to_api(ui, object_info)``, ``api_to_ui(api, object_info)``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import mimetypes
import os
import pathlib
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

try:
    import aiohttp
    import yarl
    _AIOHTTP_IMPORT_ERROR = None
except ImportError as _e:  # the conversion functions still work; Client says what is missing
    aiohttp = yarl = None
    _AIOHTTP_IMPORT_ERROR = _e

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_INPUTS = next((d for d in (REPO / "example_workflows" / "inputs", REPO / "workflows" / "inputs") if d.is_dir()),
                      REPO / "example_workflows" / "inputs")
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
# HTTP and websocket client (aiohttp: ComfyUI's own dependency)
# ----------------------------------------------------------------------------------------------

class ServerError(OSError):
    """ComfyUI answered with an HTTP error status; ``status`` and ``body`` (bytes) hold what it sent."""

    def __init__(self, message: str, status: int, body: bytes):
        super().__init__(message)
        self.status, self.body = status, body


class TLSError(ConnectionError):
    """The server's TLS certificate was not accepted (or the TLS handshake failed)."""


def _need_aiohttp():
    if aiohttp is None:
        raise ImportError("tools/comfy_client.py needs aiohttp, which ComfyUI itself installs: run it with ComfyUI's "
                          "Python, or `pip install aiohttp`") from _AIOHTTP_IMPORT_ERROR


def _run_sync(make):
    """Run the coroutine ``make()`` to completion and return its result, from plain synchronous code. Inside a
    running event loop (a notebook, a ComfyUI extension) it runs on a helper thread with a loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_loop = False
    else:
        in_loop = True
    if not in_loop:
        return asyncio.run(make())
    box = {}

    def target():
        try:
            box["value"] = asyncio.run(make())
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            box["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _queue_ids(items) -> set:
    """The prompt ids of /queue's ``queue_running`` or ``queue_pending`` entries ([number, prompt_id, ...])."""
    return {item[1] for item in items or [] if isinstance(item, (list, tuple)) and len(item) > 1}


TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


class Client:
    """ComfyUI's HTTP API and websocket for one client id.

    ``url``: ``http://`` or ``https://`` (the websocket is then ``ws://`` or ``wss://``). TLS certificates are
    verified against the system's CAs, or ``cafile`` (a PEM file of CA certificates) when given; ``insecure=True``
    skips the check. ``timeout``: how long :meth:`run` and :meth:`wait` wait for a prompt. ``request_timeout``:
    the most one HTTP request may take (``connect_timeout`` to connect). ``heartbeat``: seconds between the
    websocket pings the client sends (the connection counts as lost when a pong is not back within half that).
    ``reconnect_for``: how long a lost connection is retried (websocket with the same client id, /history polls)
    before giving up; a websocket that cannot be re-opened falls back to polling /history.

    Every method is synchronous (each runs its own short asyncio loop), so a Client can be used from any thread;
    :meth:`interrupt` from a second thread while another waits is fine."""

    def __init__(self, url: str = "http://127.0.0.1:8188", timeout: float = 600.0, *, insecure: bool = False,
                 cafile=None, request_timeout: float = 60.0, connect_timeout: float = 10.0,
                 heartbeat: float = 30.0, reconnect_for: float = 60.0, poll_interval: float = 0.25):
        self.url = url.rstrip("/")
        scheme = urllib.parse.urlsplit(self.url).scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"server URL {url!r}: use http://HOST:PORT or https://HOST:PORT")
        if _has_control(self.url):
            raise ValueError(f"server URL {url!r} contains a control character")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex
        self.last_prompt_id: str | None = None
        self.insecure, self.cafile = insecure, cafile
        self.request_timeout, self.connect_timeout = request_timeout, connect_timeout
        self.heartbeat, self.reconnect_for, self.poll_interval = heartbeat, reconnect_for, poll_interval
        if insecure:
            self._ssl = False  # aiohttp: no certificate or host name check
        elif cafile:
            self._ssl = ssl.create_default_context(cafile=str(cafile))
        else:
            self._ssl = True  # aiohttp's default: verified against the system's CAs

    # -- plumbing --------------------------------------------------------------------------------------------

    def _session(self):
        _need_aiohttp()
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.request_timeout, sock_connect=self.connect_timeout),
            connector=aiohttp.TCPConnector(ssl=self._ssl))

    def _tls_hint(self) -> str:
        return ("pass --insecure (insecure=True) to skip the check, or --cafile CA.pem (cafile=...) to trust the CA "
                "that signed it")

    def _translate(self, e: BaseException, what: str) -> BaseException:
        """The clear error (TLSError, ConnectionError, TimeoutError) for an aiohttp or asyncio failure."""
        if isinstance(e, aiohttp.ClientConnectorCertificateError):
            return TLSError(f"{what}: the TLS certificate of {self.url} is not trusted ({e.certificate_error}); "
                            f"{self._tls_hint()}")
        if isinstance(e, (aiohttp.ClientSSLError, ssl.SSLError)):
            return TLSError(f"{what}: TLS with {self.url} failed ({e}); {self._tls_hint()}")
        if isinstance(e, aiohttp.ClientConnectorError):
            return ConnectionError(f"{what}: cannot reach ComfyUI at {self.url} ({e.os_error or e})")
        connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", None)
        if connect_timeout is not None and isinstance(e, connect_timeout):
            return TimeoutError(f"{what}: could not connect to ComfyUI at {self.url} within "
                                f"{self.connect_timeout:g} s")
        if isinstance(e, asyncio.TimeoutError):
            return TimeoutError(f"{what}: ComfyUI at {self.url} did not answer within {self.request_timeout:g} s")
        return ConnectionError(f"{what}: the connection to ComfyUI at {self.url} failed ({type(e).__name__}: {e})")

    async def _areq(self, s, path: str, data: bytes | None = None, headers: dict | None = None) -> bytes:
        method = "POST" if data is not None else "GET"
        what = f"{method} {path.partition('?')[0]}"
        try:
            async with s.request(method, yarl.URL(self.url + path, encoded=True), data=data,
                                 headers=headers) as r:
                body = await r.read()
                if r.status >= 400:
                    raise ServerError(f"{what}: ComfyUI at {self.url} answered HTTP {r.status}: "
                                      f"{body[:500].decode(errors='replace')}", r.status, body)
                return body
        except (aiohttp.ClientError, asyncio.TimeoutError, ssl.SSLError) as e:
            raise self._translate(e, what) from None

    async def _ajson(self, s, path: str, data: dict | None = None):
        body = None if data is None else json.dumps(data).encode()
        raw = await self._areq(s, path, body, {"Content-Type": "application/json"} if body is not None else None)
        return json.loads(raw) if raw.strip() else None

    def _one(self, make):
        """Run ``make(session)`` in a fresh session and loop."""
        async def go():
            async with self._session() as s:
                return await make(s)
        return _run_sync(go)

    # -- requests ----------------------------------------------------------------------------------------------

    def _req(self, path: str, data: bytes | None = None, headers: dict | None = None) -> bytes:
        """GET ``path`` (POST ``data`` when given); the body, or ServerError on an HTTP error status."""
        return self._one(lambda s: self._areq(s, path, data, headers))

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

    async def _aqueue(self, s, prompt: dict) -> str:
        pid = uuid.uuid4().hex  # ours before it is sent, so Ctrl-C right after can still name it
        self.last_prompt_id = pid
        data = json.dumps({"prompt": prompt, "client_id": self.client_id, "prompt_id": pid}).encode()
        try:
            out = json.loads(await self._areq(s, "/prompt", data, {"Content-Type": "application/json"}))
        except ServerError as e:
            raise WorkflowError(_validation_text(e.body)) from None
        self.last_prompt_id = str(out.get("prompt_id") or pid)
        if out.get("node_errors"):  # ComfyUI runs the outputs that validate and drops the rest without a word
            await self._ainterrupt(s, self.last_prompt_id)
            raise WorkflowError(_validation_text(json.dumps({"error": {"message": "some outputs of the prompt failed "
                                                                       "validation; it was stopped"},
                                                             "node_errors": out["node_errors"]}).encode()))
        return self.last_prompt_id

    def queue(self, prompt: dict) -> str:
        """Queue an API-format prompt; returns its prompt id (also kept as ``last_prompt_id``)."""
        return self._one(lambda s: self._aqueue(s, prompt))

    async def _ahistory(self, s, prompt_id: str):
        hist = await self._ajson(s, f"/history/{urllib.parse.quote(prompt_id, safe='')}")
        entry = hist.get(prompt_id) if isinstance(hist, dict) else None
        if entry is None:
            return None
        status = entry.get("status", {})
        if status.get("status_str") == "error" or not status.get("completed", True):
            raise WorkflowError(_execution_text(status))
        return entry

    async def _apoll(self, s, prompt_id: str, deadline: float, timeout: float) -> dict:
        """Poll /history until the prompt ends. Connection failures are retried for ``reconnect_for`` seconds."""
        loop, lost_since = asyncio.get_running_loop(), None
        while True:
            try:
                entry = await self._ahistory(s, prompt_id)
                lost_since = None
            except TLSError:
                raise
            except (ConnectionError, TimeoutError, ServerError) as e:  # a restart, a proxy's 502: retry a while
                if isinstance(e, ServerError) and e.status < 500:
                    raise
                lost_since = loop.time() if lost_since is None else lost_since
                if loop.time() - lost_since > self.reconnect_for:
                    raise ConnectionError(f"lost ComfyUI at {self.url} for {self.reconnect_for:g} s while waiting "
                                          f"for prompt {prompt_id}: {e}") from None
                entry = None
            if entry is not None:
                return entry
            if loop.time() >= deadline:
                raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout:g} s "
                                   f"(it may still be running on {self.url})")
            await asyncio.sleep(max(0.0, min(self.poll_interval, deadline - loop.time())))

    def wait(self, prompt_id: str, timeout: float | None = None) -> dict:
        """Poll /history until the prompt ends; returns its history entry or raises WorkflowError."""
        timeout = timeout or self.timeout

        async def go(s):
            return await self._apoll(s, prompt_id, asyncio.get_running_loop().time() + timeout, timeout)
        return self._one(go)

    def run(self, prompt: dict, timeout: float | None = None) -> dict:
        """Queue an API-format prompt, wait, and return its ``outputs`` (node id -> UI output dict)."""
        return self.wait(self.queue(prompt), timeout)["outputs"]

    # -- websocket ---------------------------------------------------------------------------------------------

    def _ws_url(self) -> yarl.URL:
        u = urllib.parse.urlsplit(self.url)
        scheme = "wss" if u.scheme.lower() == "https" else "ws"
        return yarl.URL(urllib.parse.urlunsplit((scheme, u.netloc, u.path + "/ws",
                                                 urllib.parse.urlencode({"clientId": self.client_id}), "")),
                        encoded=True)

    async def _ws_open(self, s):
        """The websocket for our client id, or None when the server refuses the upgrade (no websocket there, a
        proxy in between): then the caller polls /history instead."""
        try:
            extra = {"timeout": aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0)} \
                if hasattr(aiohttp, "ClientWSTimeout") else {}
            return await s.ws_connect(self._ws_url(), heartbeat=self.heartbeat, autoping=True, max_msg_size=0,
                                      **extra)
        except aiohttp.WSServerHandshakeError:
            return None
        except (aiohttp.ClientError, asyncio.TimeoutError, ssl.SSLError) as e:
            raise self._translate(e, "websocket /ws") from None

    async def _awatch(self, s, prompt: dict, timeout: float, on_event) -> tuple[dict, list]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        events: list = []
        try:
            ws = await self._ws_open(s)  # before queueing: no message about the prompt is missed
        except TLSError:
            raise
        except (ConnectionError, TimeoutError):  # a proxy that drops upgrades: poll (HTTP errors still show)
            ws = None
        pid = await self._aqueue(s, prompt)
        if ws is None:
            return await self._apoll(s, pid, deadline, timeout), events
        lost_since, backoff, quiet = None, 0.25, max(1.0, min(5.0, self.heartbeat))
        try:
            while True:
                if loop.time() >= deadline:
                    raise TimeoutError(f"prompt {pid} did not finish in {timeout:g} s (it may still be running on "
                                       f"{self.url})")
                if ws is None:  # lost: learn the outcome from /history, else re-open with the same client id
                    try:
                        entry = await self._ahistory(s, pid)
                        if entry is not None:
                            return entry, events
                        ws = await self._ws_open(s)
                        if ws is None:  # the server no longer takes websockets: poll
                            return await self._apoll(s, pid, deadline, timeout), events
                        lost_since, backoff = None, 0.25
                        continue
                    except TLSError:
                        raise
                    except (ConnectionError, TimeoutError, ServerError) as e:
                        if isinstance(e, ServerError) and e.status < 500:
                            raise
                        if loop.time() - lost_since > self.reconnect_for:
                            return await self._apoll(s, pid, deadline, timeout), events
                        await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
                        backoff = min(backoff * 2, 5.0)
                        continue
                try:
                    msg = await ws.receive(timeout=max(0.01, min(quiet, deadline - loop.time())))
                except asyncio.TimeoutError:  # quiet for a while: a finished prompt whose message was missed?
                    try:
                        entry = await self._ahistory(s, pid)
                    except TLSError:
                        raise
                    except (ConnectionError, TimeoutError):
                        entry, msg = None, None
                    else:
                        if entry is not None:
                            return entry, events
                        continue
                except aiohttp.ClientError:
                    msg = None
                if msg is None or msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                               aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    await ws.close()  # lost (closed, reset, no pong to the heartbeat): re-open it
                    ws, lost_since = None, loop.time()
                    continue
                if msg.type == aiohttp.WSMsgType.BINARY:
                    event = {"type": "binary", "event": struct.unpack(">I", msg.data[:4])[0] if len(msg.data) >= 4
                             else None, "size": len(msg.data)}
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        event = json.loads(msg.data)
                    except ValueError:
                        continue
                    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                        continue
                    data = event.get("data") if isinstance(event.get("data"), dict) else {}
                    if data.get("prompt_id", pid) != pid:
                        continue
                else:
                    continue
                events.append(event)
                if on_event:
                    on_event(event)
                data = event.get("data") if isinstance(event.get("data"), dict) else {}
                if event["type"] in TERMINAL_EVENTS or (
                        event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == pid):
                    break
        finally:
            if ws is not None:
                await ws.close()
        return await self._apoll(s, pid, deadline, timeout), events

    def run_watched(self, prompt: dict, timeout: float | None = None, on_event=None) -> tuple[dict, list]:
        """As :meth:`run`, following the prompt on the websocket: returns ``(outputs, events)`` where events are
        the messages about this prompt (progress, executing, ...) and the binary preview frames sent meanwhile
        (``{"type": "binary", "event": N, "size": bytes}``; event 1 and 4 are previews). ``on_event(msg)`` is
        called for each as it arrives. A websocket that drops is re-opened with the same client id (the outcome
        is read from /history meanwhile); a server that refuses websockets is polled instead (no events)."""
        timeout = timeout or self.timeout
        entry, events = self._one(lambda s: self._awatch(s, prompt, timeout, on_event))
        return entry["outputs"], events

    def download(self, image: dict) -> bytes:
        q = urllib.parse.urlencode({k: image.get(k, "") for k in ("filename", "subfolder", "type")})
        return self._req(f"/view?{q}")

    # -- stopping our own prompt ---------------------------------------------------------------------------------

    async def _ainterrupt(self, s, pid: str):
        deleted = False
        for _ in range(3):
            q = await self._ajson(s, "/queue") or {}
            if pid in _queue_ids(q.get("queue_running")):
                await self._ajson(s, "/interrupt", {"prompt_id": pid})
                return "interrupted"
            if pid in _queue_ids(q.get("queue_pending")):
                await self._ajson(s, "/queue", {"delete": [pid]})
                deleted = True
                continue  # it may have started meanwhile: look again
            break
        return "deleted" if deleted else None

    def interrupt(self, prompt_id: str | None = None) -> str | None:
        """Stop ``prompt_id`` (default: the last prompt this client queued) and never another one.

        /queue is read first: when the prompt is running, ``POST /interrupt {"prompt_id": id}`` is sent (ComfyUI
        0.3.64 and 0.8.0 interrupt only when that prompt is the one running; for older servers, which interrupt
        whatever runs, checking first keeps the window to a few milliseconds); when it is pending it is deleted
        from the queue (``POST /queue {"delete": [id]}``); otherwise nothing is sent. Returns ``"interrupted"``,
        ``"deleted"`` or None."""
        pid = prompt_id or self.last_prompt_id
        if not pid:
            raise ValueError("interrupt: this client has queued no prompt; name the prompt_id to stop")

        return self._one(lambda s: self._ainterrupt(s, pid))

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


MODE_NEVER, MODE_BYPASS = 2, 4  # LiteGraph modes: 2 "never" (muted), 4 bypass
VIRTUAL_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}  # frontend-only nodes: never sent


def _valid_connection(a, b) -> bool:
    """LiteGraph's ``isValidConnection``: ``*`` or empty matches anything, otherwise equal types (case-insensitive),
    or for comma-separated type lists any pair."""
    a = 0 if a in ("", "*", None) else a
    b = 0 if b in ("", "*", None) else b
    if not a or not b or a == b:
        return True
    a, b = str(a).lower(), str(b).lower()
    if "," not in a and "," not in b:
        return a == b
    return any(_valid_connection(x, y) for x in a.split(",") for y in b.split(","))


class _UIGraph:
    """A UI-format graph, resolved the way ComfyUI's frontend does (``ExecutableNodeDTO.resolveInput``)."""

    def __init__(self, ui: dict):
        self.nodes = {str(n["id"]): n for n in ui["nodes"]}
        self.links = {}
        for link in ui.get("links") or []:
            if isinstance(link, dict):
                self.links[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"],
                                          link["target_slot"], link.get("type"))
            else:
                self.links[link[0]] = tuple(link[1:6])

    def resolve_input(self, node: dict, index: int, typ=None, seen=None):
        """(origin node id, output slot) feeding input ``index`` of ``node``, or None when nothing real does."""
        seen = set() if seen is None else seen
        key = (str(node["id"]), "I", index)
        if key in seen:
            raise WorkflowError(f"node {node['id']}: circular link through its input {index}")
        seen.add(key)
        inputs = node.get("inputs") or []
        if index >= len(inputs) or inputs[index].get("link") is None:
            return None
        link = self.links.get(inputs[index]["link"])
        if link is None:
            raise WorkflowError(f"node {node['id']} input '{inputs[index].get('name')}': link "
                                f"{inputs[index]['link']} is not in the workflow's links")
        origin = self.nodes.get(str(link[0]))
        if origin is None:
            raise WorkflowError(f"node {node['id']} input '{inputs[index].get('name')}': its link comes from node "
                                f"{link[0]}, which is not in the workflow")
        return self.resolve_output(origin, link[1], typ if typ is not None else inputs[index].get("type"), seen)

    def resolve_output(self, node: dict, slot: int, typ, seen):
        key = (str(node["id"]), "O", slot)
        if key in seen:
            raise WorkflowError(f"node {node['id']}: circular link through its output {slot}")
        seen.add(key)
        if node.get("mode", 0) == MODE_BYPASS:  # the input of the same type stands in for the output
            index = self._bypass_input(node, slot, typ)
            return None if index < 0 else self.resolve_input(node, index, None, seen)
        if node["type"] in VIRTUAL_TYPES:  # a Reroute passes on what feeds its input; the others feed nothing
            return self.resolve_input(node, slot, typ, seen)
        return str(node["id"]), slot

    @staticmethod
    def _bypass_input(node: dict, slot: int, typ) -> int:
        """The frontend's ``getBypassSlotIndex``: the input at the output's own index when its type fits both the
        output and the target input ``typ``, else the first input of exactly ``typ``, else the first that fits."""
        inputs = node.get("inputs") or []
        outputs = node.get("outputs") or []
        out_type = outputs[slot].get("type") if slot < len(outputs) else None
        if typ in ("*", ""):
            return slot if len(inputs) > slot else (0 if inputs else -1)
        if slot < len(inputs) and _valid_connection(inputs[slot].get("type"), out_type) and \
                _valid_connection(inputs[slot].get("type"), typ):
            return slot
        for i, inp in enumerate(inputs):
            if inp.get("type") == typ:
                return i
        for i, inp in enumerate(inputs):
            if _valid_connection(inp.get("type"), out_type) and _valid_connection(inp.get("type"), typ):
                return i
        return -1


def _refuse_subgraphs(ui: dict) -> None:
    """Subgraphs (0.8.0's ``definitions.subgraphs``) and the older group nodes (``extra.groupNodes``) are not
    expanded: say which node is one, and what to do."""
    subgraphs = {s.get("id"): s.get("name") for s in ((ui.get("definitions") or {}).get("subgraphs") or [])
                 if isinstance(s, dict)}
    groups = set(((ui.get("extra") or {}).get("groupNodes") or {}))
    for node in ui["nodes"]:
        typ = node.get("type")
        if typ in subgraphs:
            raise WorkflowError(
                f"node {node['id']} ({node.get('title') or subgraphs[typ] or typ}) is a subgraph: this client does "
                "not expand subgraphs; unpack it in ComfyUI's editor (right-click > Unpack Subgraph) and save "
                "again, or save the workflow with 'Export (API)'")
        if isinstance(typ, str) and (typ.split(">", 1)[-1] in groups or typ.split("/", 1)[-1] in groups) and \
                (typ.startswith("workflow>") or typ.startswith("workflow/")):
            raise WorkflowError(
                f"node {node['id']} ({typ}) is a group node: this client does not expand group nodes; convert it "
                "to nodes in ComfyUI's editor and save again, or save the workflow with 'Export (API)'")


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to an API prompt, as ComfyUI's frontend does when it queues (``graphToPrompt``).

    - Note, MarkdownNote: dropped. Reroute: resolved through (chains too), so the target gets the real source.
    - PrimitiveNode: dropped; its value is written into the widget of every input it feeds. (The newer
      ``PrimitiveInt``/``PrimitiveFloat``/... are real server nodes and are kept, linked like any other.)
    - mode 2 (muted): dropped, and every input linked to it is removed from the nodes it fed.
    - mode 4 (bypass): dropped; each link from one of its outputs is rewired to what feeds the bypassed node's
      input of the same type (the input at the output's own index if its type fits, else the first of the same
      type); when none fits, or that input is unlinked, the target input is left out (a widget keeps its value).
    - Subgraphs and group nodes: WorkflowError naming the node (not expanded)."""
    _refuse_subgraphs(ui)
    g = _UIGraph(ui)
    written = {}  # (target node id, widget name) -> the value a PrimitiveNode writes there
    for node in g.nodes.values():
        if node.get("type") != "PrimitiveNode":
            continue
        values = node.get("widgets_values")
        if not isinstance(values, list) or not values:
            continue
        for lid in ((node.get("outputs") or [{}])[0].get("links") or []):
            link = g.links.get(lid)
            target = g.nodes.get(str(link[2])) if link else None
            if target is None:
                continue
            inputs = target.get("inputs") or []
            inp = inputs[link[3]] if isinstance(link[3], int) and link[3] < len(inputs) else None
            if inp is None or inp.get("link") != lid:
                inp = next((i for i in inputs if i.get("link") == lid), None)
            name = ((inp or {}).get("widget") or {}).get("name")
            if name:
                written[(str(target["id"]), name)] = values[0]
    api = {}
    for nid, node in sorted(g.nodes.items(), key=lambda kv: (not kv[0].lstrip("-").isdigit(),
                                                             int(kv[0]) if kv[0].lstrip("-").isdigit() else 0, kv[0])):
        if node.get("type") in VIRTUAL_TYPES or node.get("mode", 0) in (MODE_NEVER, MODE_BYPASS):
            continue
        spec = object_info.get(node["type"])
        if spec is None:
            raise WorkflowError(f"node {nid}: '{node['type']}' is not installed in this ComfyUI")
        values = node.get("widgets_values")
        values = values if isinstance(values, (list, dict)) else []
        inputs, pos = {}, 0
        for name, typ, opts in _inputs(spec):
            if not _is_widget(typ, opts):
                continue
            have, value = False, None
            if isinstance(values, dict):
                have, value = name in values, values.get(name)
            elif pos < len(values):
                have, value = True, values[pos]
            pos += 1 + _extra_widget_values(name, typ, opts)
            if (nid, name) in written:
                have, value = True, written[(nid, name)]
            if have:
                inputs[name] = {"__value__": value} if isinstance(value, list) else value
        for index, inp in enumerate(node.get("inputs") or []):
            source = g.resolve_input(node, index)
            if source is not None:
                inputs[inp["name"]] = [source[0], int(source[1])]
        api[nid] = {"class_type": node["type"], "inputs": inputs}
    for node in api.values():  # inputs linked to a node that is not sent (muted) go
        for name, value in list(node["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and value[0] not in api:
                del node["inputs"][name]
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
    client = Client(f"http://127.0.0.1:{port}", request_timeout=10)
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
    r.add_argument("--server", default=os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188"),
                   help="http://HOST:PORT or https://HOST:PORT (default $COMFYUI_URL or http://127.0.0.1:8188)")
    r.add_argument("--insecure", action="store_true", help="https: do not verify the server's TLS certificate")
    r.add_argument("--cafile", help="https: trust the CA certificate(s) in this PEM file (default: the system's)")
    r.add_argument("--comfyui", help="start the ComfyUI in this folder for the run instead of using --server")
    r.add_argument("--comfyui-args", default="", help="extra arguments for that ComfyUI, e.g. '--cpu'")
    r.add_argument("--inputs", default=str(DEFAULT_INPUTS),
                   help="folder of the images to upload (default: the pack's example_workflows/inputs)")
    r.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE")
    r.add_argument("--seed", type=int, help="set every seed/noise_seed input")
    r.add_argument("--out", default="pixels_outputs", help="folder for the output images")
    r.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the prompt (default 3600)")
    r.add_argument("--request-timeout", type=float, default=60, help="seconds one HTTP request may take")
    args = ap.parse_args(argv)

    proc = client = None
    if args.comfyui:
        port = free_port()
        print(f"starting ComfyUI from {args.comfyui} on port {port} ...", flush=True)
        proc = start_comfyui(args.comfyui, port, args.comfyui_args.split())
        args.server = f"http://127.0.0.1:{port}"
    try:
        client = Client(args.server, args.timeout, insecure=args.insecure, cafile=args.cafile,
                        request_timeout=args.request_timeout)
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
                      f"step {d.get('value')}/{d.get('max')}   ", end="", flush=True)
            elif msg["type"] == "executing" and d.get("node") is not None:
                print(f"\n  running node {d['node']} ({api.get(str(d['node']), {}).get('class_type', '?')})",
                      end="", flush=True)
        outputs, _ = client.run_watched(api, on_event=show)
        print()
        saved, refused = save_outputs(client, outputs, args.out)
        for path in saved:
            print(path)
        for msg in refused:
            print(f"refused: {msg}", file=sys.stderr)
        print(f"done in {time.monotonic() - t0:.1f} s")
        if refused:
            print(f"{len(refused)} output image(s) not saved: their names reach outside {args.out}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        return _stop_own_prompt(client)
    except WorkflowError as e:
        print(f"ComfyUI error: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:  # connection, TLS, timeout, HTTP status, a bad URL: say it plainly
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    return 0


def _stop_own_prompt(client) -> int:
    """Ctrl-C: stop the prompt this run queued (and no other); exit code 130."""
    pid = client.last_prompt_id if client is not None else None
    if pid is None:
        print("\nstopped: nothing was queued", file=sys.stderr)
        return 130
    try:
        what = client.interrupt(pid)
    except (OSError, ValueError) as e:
        print(f"\nstopped, but prompt {pid} could not be cancelled on the server: {e}", file=sys.stderr)
        return 130
    print("\nstopped: " + {"interrupted": f"prompt {pid} was interrupted",
                            "deleted": f"prompt {pid} was removed from the queue"}.get(
        what, f"prompt {pid} is neither running nor queued any more; nothing was interrupted"), file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
