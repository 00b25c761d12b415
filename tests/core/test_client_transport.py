"""tools/comfy_client.py transport: TLS (verified by default, --insecure, --cafile), the websocket (a drop mid-run is
re-opened with the same client id and the outputs still arrive, polling /history when it cannot be; server pings
are answered; a silent connection is found by the heartbeat), timeouts with clear messages, and stopping only our
own prompt (POST /interrupt with its prompt_id when it runs, deleted from the queue when it waits, nothing when a
foreign prompt runs; Ctrl-C in ``main``).

The fake ComfyUI is an aiohttp server on 127.0.0.1 in a thread of its own, started per test; no ComfyUI, no torch.
Every wait has a timeout."""
import asyncio
import json
import os
import shutil
import signal
import ssl
import subprocess
import time

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

from tests.core._client import LOAD_SAVE_INFO, load  # noqa: E402
from tests.core._fake_server import FakeServer  # noqa: E402

cc = load("comfy_client_transport_under_test")

OBJECT_INFO = LOAD_SAVE_INFO
PROMPT = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
          "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}}}
IMAGE = {"filename": "r.png", "subfolder": "", "type": "output"}


def fast_client(url, **kw):
    kw = {"timeout": 20, "request_timeout": 5, "connect_timeout": 3, "heartbeat": 30, "reconnect_for": 5,
          "poll_interval": 0.05, **kw}
    return cc.Client(url, **kw)


class FakeAio(FakeServer):
    """A ComfyUI stand-in: /prompt, /ws, /history, /queue, /interrupt, /object_info, /view, /upload/image.

    ``script(fake, ws, n, pid)`` is the coroutine that serves the n-th websocket connection (0-based) for the prompt
    ``pid`` (the first queued one, waited for); it calls ``fake.finish(pid)`` to put the prompt in the history."""

    def __init__(self, script=None, ssl_context=None, ws=True):
        self.script, self.ws_enabled = script, ws
        self.prompts, self.ws_clients, self.interrupts, self.queue_posts, self.pongs = [], [], [], [], []
        self.history, self.running, self.pending = {}, [], []
        self.history_requests = 0
        self.delay = {}  # path -> seconds to sleep before answering
        self.node_errors = {}  # what /prompt answers with: outputs that failed validation (the rest still runs)
        self.serve(ssl_context)

    async def restart(self, pause):
        """Stop listening for ``pause`` seconds (every request refused), then listen on the same port again."""
        await self.site.stop()
        await asyncio.sleep(pause)
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await self.site.start()

    async def _delay(self, request):
        await asyncio.sleep(self.delay.get(request.path, 0))

    async def _prompt_of(self, client_id):
        """The id of the latest prompt that websocket client queued, waiting (10 s at most) for one."""
        for _ in range(500):
            mine = [p for p in self.prompts if p.get("client_id") == client_id]
            if mine:
                return mine[-1]["prompt_id"]
            await asyncio.sleep(0.02)
        raise asyncio.TimeoutError

    async def object_info(self, request):
        await self._delay(request)
        return web.json_response(OBJECT_INFO)

    async def prompt(self, request):
        body = await request.json()
        pid = body.setdefault("prompt_id", f"p{len(self.prompts) + 1}")
        self.prompts.append(body)
        self.running.append(pid)
        return web.json_response({"prompt_id": pid, "number": len(self.prompts), "node_errors": self.node_errors})

    def finish(self, pid, status="success"):
        self.history[pid] = {"outputs": {"9": {"images": [IMAGE]}} if status == "success" else {},
                             "status": {"status_str": status, "completed": status == "success", "messages": [
                                 ["execution_interrupted",
                                  {"prompt_id": pid, "node_id": "9", "node_type": "SaveImage"}]]
                                 if status != "success" else []}}
        if pid in self.running:
            self.running.remove(pid)

    async def get_history(self, request):
        self.history_requests += 1
        await self._delay(request)
        pid = request.match_info["pid"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def get_queue(self, request):
        return web.json_response({"queue_running": [[0, p, {}, {}, []] for p in self.running],
                                  "queue_pending": [[1, p, {}, {}, []] for p in self.pending]})

    async def post_queue(self, request):
        body = await request.json()
        self.queue_posts.append(body)
        for pid in body.get("delete", []):
            if pid in self.pending:
                self.pending.remove(pid)
        return web.Response()

    async def interrupt(self, request):
        self.interrupts.append(await request.json())
        return web.Response()

    async def view(self, request):
        return web.Response(body=b"IMG:" + request.query.get("filename", "").encode())

    async def ws(self, request):
        if not self.ws_enabled:
            raise web.HTTPNotFound()
        ws = web.WebSocketResponse(autoping=False)  # pings and pongs reach the script
        await ws.prepare(request)
        n = len(self.ws_clients)
        self.ws_clients.append(request.query.get("clientId"))
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                                       "sid": request.query.get("clientId")}})
        try:
            pid = await self._prompt_of(request.query.get("clientId"))
            if self.script:
                await self.script(self, ws, n, pid)
            else:
                await run_to_end(self, ws, pid)
            await asyncio.wait_for(ws.receive(), 10)  # until the client closes
        except (asyncio.TimeoutError, ConnectionError):
            pass
        return ws

    def close(self):
        async def stop():
            await self.runner.cleanup()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            if not self.thread.is_alive():
                self.loop.close()


async def run_to_end(fake, ws, pid):
    await ws.send_json({"type": "executed", "data": {"node": "9", "output": {"images": [IMAGE]}, "prompt_id": pid}})
    fake.finish(pid)
    await ws.send_json({"type": "executing", "data": {"node": None, "prompt_id": pid}})
    await ws.send_json({"type": "execution_success", "data": {"prompt_id": pid}})


@pytest.fixture
def fake():
    servers = []

    def make(*args, **kw):
        servers.append(FakeAio(*args, **kw))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


# ---------------------------------------------------------------------------------------------------------------
# websocket: a plain run, a drop, pings, heartbeat
# ---------------------------------------------------------------------------------------------------------------

def test_run_watched_follows_the_prompt(fake):
    async def script(fake, ws, n, pid):
        await ws.send_json({"type": "execution_start", "data": {"prompt_id": pid}})
        await ws.send_json({"type": "progress",
                            "data": {"value": 1, "max": 2, "prompt_id": "someone-else", "node": "3"}})
        await ws.send_bytes(b"\x00\x00\x00\x01" + b"jpegdata")
        await run_to_end(fake, ws, pid)
    server = fake(script)
    client = fast_client(server.url)
    outputs, events = client.run_watched(PROMPT)
    assert outputs == {"9": {"images": [IMAGE]}}
    types = [e["type"] for e in events]
    assert types == ["status", "execution_start", "binary", "executed", "executing"]  # foreign progress filtered
    assert events[2] == {"type": "binary", "event": 1, "size": 12}
    assert server.ws_clients == [client.client_id]
    sent = server.prompts[0]
    assert sent["client_id"] == client.client_id and sent["prompt_id"] == client.last_prompt_id


@pytest.mark.parametrize("how", ["abort", "close"])
def test_a_websocket_drop_mid_run_reconnects_with_the_same_client_id(fake, how):
    async def script(fake, ws, n, pid):
        if n == 0:
            await ws.send_json({"type": "executing", "data": {"node": "1", "prompt_id": pid}})
            await ws.send_json({"type": "progress", "data": {"value": 1, "max": 2, "node": "9", "prompt_id": pid}})
            if how == "abort":
                ws._req.transport.abort()  # the TCP connection goes, no close frame
            else:
                await ws.close(code=1011)
            return
        await ws.send_json({"type": "progress", "data": {"value": 2, "max": 2, "node": "9", "prompt_id": pid}})
        await run_to_end(fake, ws, pid)
    server = fake(script)
    client = fast_client(server.url)
    seen = []
    t0 = time.monotonic()
    outputs, events = client.run_watched(PROMPT, on_event=seen.append)
    assert time.monotonic() - t0 < 10
    assert outputs == {"9": {"images": [IMAGE]}}
    assert server.ws_clients == [client.client_id, client.client_id]
    assert len(server.prompts) == 1  # queued once
    progress = [e["data"]["value"] for e in events if e["type"] == "progress"]
    assert progress == [1, 2] and events == seen
    assert events[-1]["type"] == "executing" and events[-1]["data"]["node"] is None


def test_a_server_that_goes_away_and_comes_back_mid_run(fake):
    async def script(fake, ws, n, pid):
        if n == 0:
            await ws.send_json({"type": "executing", "data": {"node": "1", "prompt_id": pid}})
            ws._req.transport.abort()
            await fake.restart(pause=1.0)
            return
        await run_to_end(fake, ws, pid)
    server = fake(script)
    client = fast_client(server.url)
    outputs, events = client.run_watched(PROMPT)
    assert outputs == {"9": {"images": [IMAGE]}}
    assert server.ws_clients == [client.client_id] * 2 and len(server.prompts) == 1
    assert [e["type"] for e in events][-2:] == ["executed", "executing"]


def test_a_drop_with_no_websocket_after_it_falls_back_to_history(fake):
    async def script(fake, ws, n, pid):
        fake.ws_enabled = False  # the re-opened websocket is refused from now on
        await ws.send_json({"type": "executing", "data": {"node": "1", "prompt_id": pid}})
        await ws.close()
        await asyncio.sleep(0.5)
        fake.finish(pid)
    server = fake(script)
    client = fast_client(server.url)
    outputs, events = client.run_watched(PROMPT)
    assert outputs == {"9": {"images": [IMAGE]}}
    assert len(server.ws_clients) == 1 and server.history_requests >= 2


def test_a_missed_final_message_is_found_in_the_history(fake):
    async def script(fake, ws, n, pid):
        fake.finish(pid)  # and never says so on the websocket
    server = fake(script)
    outputs, _ = fast_client(server.url, heartbeat=1).run_watched(PROMPT)
    assert outputs == {"9": {"images": [IMAGE]}}


def test_server_pings_are_answered(fake):
    async def script(fake, ws, n, pid):
        await ws.ping(b"are-you-there")
        msg = await asyncio.wait_for(ws.receive(), 5)
        fake.pongs.append((msg.type, msg.data))
        await run_to_end(fake, ws, pid)
    server = fake(script)
    outputs, _ = fast_client(server.url).run_watched(PROMPT)
    assert outputs == {"9": {"images": [IMAGE]}}
    assert server.pongs == [(aiohttp.WSMsgType.PONG, b"are-you-there")]


def test_a_silent_websocket_is_found_by_the_heartbeat_and_reopened(fake):
    async def script(fake, ws, n, pid):
        if n == 0:  # reads nothing, answers no ping: a half-open connection
            await asyncio.sleep(8)
            return
        await run_to_end(fake, ws, pid)
    server = fake(script)
    client = fast_client(server.url, heartbeat=0.4)
    t0 = time.monotonic()
    outputs, _ = client.run_watched(PROMPT)
    assert outputs == {"9": {"images": [IMAGE]}} and time.monotonic() - t0 < 6
    assert server.ws_clients == [client.client_id] * 2


def test_a_run_longer_than_the_request_timeout_keeps_its_websocket(fake):
    async def script(fake, ws, n, pid):
        for i in range(4):
            await asyncio.sleep(0.4)
            await ws.send_json({"type": "progress", "data": {"value": i, "max": 4, "node": "9", "prompt_id": pid}})
        await run_to_end(fake, ws, pid)
    server = fake(script)
    client = fast_client(server.url, request_timeout=0.5)
    outputs, events = client.run_watched(PROMPT)
    assert outputs == {"9": {"images": [IMAGE]}} and len(server.ws_clients) == 1
    assert [e["data"]["value"] for e in events if e["type"] == "progress"] == [0, 1, 2, 3]


def test_a_prompt_with_some_outputs_refused_is_stopped_and_named(fake):
    """ComfyUI queues a prompt whose other outputs validate and drops the refused ones without a word: the client
    stops that prompt (it is running here, so it is interrupted by id) and raises with ComfyUI's validation text."""
    f = fake()
    f.node_errors = {"7": {"class_type": "SaveImage", "errors": [
        {"message": "Required input is missing", "details": "images"}]}}
    client = fast_client(f.url)
    with pytest.raises(cc.WorkflowError) as err:
        client.run(PROMPT, timeout=10)
    text = str(err.value)
    assert "some outputs of the prompt failed validation" in text
    assert "node 7 (SaveImage): Required input is missing: images" in text
    assert f.interrupts == [{"prompt_id": f.prompts[0]["prompt_id"]}]


def test_an_interrupted_prompt_raises_workflow_error(fake):
    async def script(fake, ws, n, pid):
        fake.finish(pid, status="error")
        await ws.send_json({"type": "execution_interrupted", "data": {"prompt_id": pid, "node_id": "9"}})
    server = fake(script)
    with pytest.raises(cc.WorkflowError, match="execution_interrupted in node 9"):
        fast_client(server.url).run_watched(PROMPT)


# ---------------------------------------------------------------------------------------------------------------
# timeouts and unreachable servers: clear messages
# ---------------------------------------------------------------------------------------------------------------

def test_a_slow_request_times_out_with_a_clear_message(fake):
    server = fake()
    server.delay["/object_info"] = 5
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"GET /object_info: ComfyUI at http://127\.0\.0\.1:\d+ did not answer "
                                           r"within 0\.5 s"):
        fast_client(server.url, request_timeout=0.5).object_info()
    assert time.monotonic() - t0 < 3


def test_a_prompt_that_never_ends_times_out(fake):
    async def script(fake, ws, n, pid):
        await asyncio.sleep(5)
    server = fake(script)
    client = fast_client(server.url, heartbeat=0.5)
    with pytest.raises(TimeoutError, match=r"prompt \w+ did not finish in 1\.5 s"):
        client.run_watched(PROMPT, timeout=1.5)
    with pytest.raises(TimeoutError, match="did not finish in 0.3 s"):
        client.wait(client.last_prompt_id, timeout=0.3)


def test_an_unreachable_server_says_so(tmp_path, capsys):
    port = cc.free_port()
    with pytest.raises(ConnectionError, match=f"cannot reach ComfyUI at http://127.0.0.1:{port}"):
        fast_client(f"http://127.0.0.1:{port}").object_info()
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(PROMPT))
    assert cc.main(["run", str(wf), "--server", f"http://127.0.0.1:{port}", "--request-timeout", "3"]) == 1
    assert f"error: GET /object_info: cannot reach ComfyUI at http://127.0.0.1:{port}" in capsys.readouterr().err


def test_a_refused_url_scheme():
    with pytest.raises(ValueError, match="use http://HOST:PORT or https://HOST:PORT"):
        cc.Client("ftp://127.0.0.1:1")


# ---------------------------------------------------------------------------------------------------------------
# TLS: a CA and a server certificate for 127.0.0.1 made at test time
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("no openssl command to make a test certificate with")
    d = tmp_path_factory.mktemp("tls")

    def sh(*args):
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True, timeout=60)
    (d / "ca.ext").write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                              "subjectKeyIdentifier=hash\n")
    (d / "leaf.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,"
                                "keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,"
                                "DNS:localhost\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
    sh("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-subj", "/CN=pixels test CA",
       "-out", "ca.csr")
    sh("x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-days", "2", "-extfile", "ca.ext", "-out", "ca.pem")
    sh("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-subj", "/CN=127.0.0.1",
       "-out", "leaf.csr")
    sh("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
       "-extfile", "leaf.ext", "-out", "leaf.pem")
    return d


@pytest.fixture
def tls_server(fake, certs):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs / "leaf.pem", certs / "leaf.key")
    return fake(ssl_context=ctx)


def test_tls_is_verified_by_default(tls_server):
    assert tls_server.url.startswith("https://")
    with pytest.raises(cc.TLSError, match=r"not trusted .*--insecure.*--cafile"):
        fast_client(tls_server.url).object_info()


def test_tls_with_the_ca_given(tls_server, certs):
    client = fast_client(tls_server.url, cafile=certs / "ca.pem")
    assert client.object_info() == OBJECT_INFO
    outputs, events = client.run_watched(PROMPT)  # the websocket is wss:// and verified the same way
    assert outputs == {"9": {"images": [IMAGE]}} and tls_server.ws_clients == [client.client_id]


def test_tls_insecure_skips_the_check(tls_server):
    outputs, _ = fast_client(tls_server.url, insecure=True).run_watched(PROMPT)
    assert outputs == {"9": {"images": [IMAGE]}}


def test_main_over_tls(tls_server, certs, tmp_path, capsys):
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(PROMPT))
    args = ["run", str(wf), "--server", tls_server.url, "--inputs", str(tmp_path), "--out", str(tmp_path / "out"),
            "--timeout", "20"]
    assert cc.main(args) == 1
    assert "not trusted" in capsys.readouterr().err and tls_server.prompts == []
    assert cc.main(args + ["--insecure"]) == 0
    assert (tmp_path / "out" / "r.png").read_bytes() == b"IMG:r.png"
    assert cc.main(args + ["--cafile", str(certs / "ca.pem")]) == 0


# ---------------------------------------------------------------------------------------------------------------
# stopping our own prompt, never another one
# ---------------------------------------------------------------------------------------------------------------

def test_interrupt_sends_our_prompt_id_when_ours_runs(fake):
    server = fake()
    client = fast_client(server.url)
    client.last_prompt_id = "ours"
    server.running = ["ours"]
    assert client.interrupt() == "interrupted"
    assert server.interrupts == [{"prompt_id": "ours"}] and server.queue_posts == []


def test_interrupt_leaves_a_foreign_running_prompt_alone_and_deletes_ours_when_pending(fake):
    server = fake()
    client = fast_client(server.url)
    server.running, server.pending = ["theirs"], ["other", "ours"]
    assert client.interrupt("ours") == "deleted"
    assert server.interrupts == []  # nothing sent that could stop "theirs"
    assert server.queue_posts == [{"delete": ["ours"]}] and server.pending == ["other"]


def test_interrupt_sends_nothing_when_ours_is_no_longer_queued(fake):
    server = fake()
    server.running = ["theirs"]
    assert fast_client(server.url).interrupt("ours") is None
    assert server.interrupts == [] and server.queue_posts == []


def test_interrupt_needs_a_prompt(fake):
    with pytest.raises(ValueError, match="queued no prompt"):
        fast_client(fake().url).interrupt()


def test_ctrl_c_in_main_interrupts_only_our_prompt(fake, tmp_path, capsys):
    async def script(fake, ws, n, pid):
        await ws.send_json({"type": "executing", "data": {"node": "9", "prompt_id": pid}})
        fake.loop.call_later(0.3, os.kill, os.getpid(), signal.SIGINT)  # Ctrl-C while it runs
        await asyncio.sleep(8)
    server = fake(script)
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(PROMPT))
    t0 = time.monotonic()
    rc = cc.main(["run", str(wf), "--server", server.url, "--inputs", str(tmp_path), "--out", str(tmp_path / "o"),
                  "--timeout", "20"])
    assert rc == 130 and time.monotonic() - t0 < 3
    pid = server.prompts[0]["prompt_id"]
    assert server.interrupts == [{"prompt_id": pid}]
    assert f"prompt {pid} was interrupted" in capsys.readouterr().err
