"""tools/comfy_batch.py: manifest columns and per-row errors, done-markers and skip-on-rerun, the result manifest,
uploads once per server, a row retried elsewhere when its server dies or hangs, bounded retries, Ctrl-C.

The ComfyUI servers are fake aiohttp apps on 127.0.0.1 (each in a thread of its own); one local Ray serves the
whole module (skipped, with the reason, when Ray is not installed). Every wait has a timeout."""
import asyncio
import collections
import csv
import hashlib
import importlib.util
import json
import pathlib
import sys
import threading
import time
import _thread

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

from tests.core._fake_server import FakeServer  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent.parent


def _load():
    """tools/comfy_batch.py as the module ``comfy_batch_under_test`` (kept in sys.modules: Ray pickles it by value)."""
    spec = importlib.util.spec_from_file_location("comfy_batch_under_test", REPO / "tools" / "comfy_batch.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cb = _load()

OBJECT_INFO = {
    "LoadImage": {"input": {"required": {"image": [["default.png"], {"image_upload": True}]}},
                  "output": ["IMAGE", "MASK"], "name": "LoadImage"},
    "PixelsLoadExample": {"input": {"required": {"image": [["pixels_source.png"]]}}, "output": ["IMAGE", "MASK"],
                          "name": "PixelsLoadExample"},
    "Text": {"input": {"required": {"text": ["STRING", {}]}}, "output": ["COND"], "name": "Text"},
    "Edit": {"input": {"required": {"source": ["IMAGE"], "exemplar": ["IMAGE"], "cond": ["COND"],
                                    "seed": ["INT", {}], "steps": ["INT", {"max": 100}],
                                    "strength": ["FLOAT", {}]}}, "output": ["IMAGE"], "name": "Edit"},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}},
                  "output": [], "name": "SaveImage"},
}
WORKFLOW = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "default.png"}, "_meta": {"title": "Source"}},
    "2": {"class_type": "PixelsLoadExample", "inputs": {"image": "pixels_source.png"}},
    "3": {"class_type": "Text", "inputs": {"text": "a house"}, "_meta": {"title": "Prompt"}},
    "4": {"class_type": "Edit", "inputs": {"source": ["1", 0], "exemplar": ["2", 0], "cond": ["3", 0], "seed": 1,
                                           "steps": 4, "strength": 0.5}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "edit"}},
}


class FakeComfy(FakeServer):
    """A ComfyUI stand-in. A prompt 'runs' for ``run_seconds`` and yields one output image whose bytes are the JSON
    of what it saw (text, seed, steps, the sha256 of each uploaded image). ``die_on=n``: the n-th prompt (1-based)
    takes the server down for good; ``hang_on=n``: the n-th never finishes; ``forget=True``: the uploads are lost
    after each prompt."""

    def __init__(self, run_seconds=0.05, die_on=None, hang_on=None, forget=False):
        self.run_seconds, self.die_on, self.hang_on, self.forget = run_seconds, die_on, hang_on, forget
        self.files = {"default.png": b"DEFAULT"}
        self.prompts, self.interrupts, self.uploads, self.finished = [], [], [], []
        self.history, self.outputs, self.running, self.sockets = {}, {}, [], collections.defaultdict(list)
        self.dead = False
        self.serve()

    async def _down(self):
        for sockets in self.sockets.values():
            for ws in sockets:
                await ws.close()
        await self.runner.cleanup()

    async def _die(self):
        self.dead = True
        await self._down()

    def close(self):
        if not self.dead:
            asyncio.run_coroutine_threadsafe(self._die(), self.loop).result(10)

    async def object_info(self, request):
        return web.json_response(OBJECT_INFO)

    async def post_queue(self, request):
        return web.json_response({})

    async def upload(self, request):
        form = await request.post()
        sub = form.get("subfolder", "")
        name = form["image"].filename
        data = form["image"].file.read()
        self.uploads.append(f"{sub}/{name}" if sub else name)
        self.files[f"{sub}/{name}" if sub else name] = data
        return web.json_response({"name": name, "subfolder": sub, "type": "input"})

    async def prompt(self, request):
        body = await request.json()
        prompt, pid = body["prompt"], body["prompt_id"]
        errors = {}
        for nid, node in prompt.items():
            if node["class_type"] not in OBJECT_INFO:
                errors[nid] = {"errors": [{"message": "no such node", "details": node["class_type"]}],
                               "class_type": node["class_type"]}
            elif node["class_type"] == "LoadImage" and node["inputs"]["image"] not in self.files:
                errors[nid] = {"errors": [{"message": "Invalid image file", "details": node["inputs"]["image"]}],
                               "class_type": "LoadImage"}
            elif node["class_type"] == "Edit" and not isinstance(node["inputs"]["steps"], int) \
                    or node["class_type"] == "Edit" and node["inputs"]["steps"] > 100:
                errors[nid] = {"errors": [{"message": "Value bigger than max",
                                           "details": f"steps: {node['inputs']['steps']} > 100"}],
                               "class_type": "Edit"}
        if errors:
            return web.json_response({"error": {"type": "prompt_outputs_failed_validation",
                                                "message": "Prompt outputs failed validation"},
                                      "node_errors": errors}, status=400)
        self.prompts.append(body)
        self.running.append(pid)
        n = len(self.prompts)
        if n == self.die_on:
            asyncio.get_running_loop().call_later(0.1, lambda: asyncio.ensure_future(self._die()))
        elif n != self.hang_on:
            asyncio.get_running_loop().call_later(self.run_seconds,
                                                  lambda: asyncio.ensure_future(self._finish(pid, prompt, body)))
        return web.json_response({"prompt_id": pid, "number": n, "node_errors": {}})

    async def _finish(self, pid, prompt, body):
        if pid not in self.running:  # interrupted meanwhile
            return
        seen = {"text": prompt["3"]["inputs"]["text"], "seed": prompt["4"]["inputs"]["seed"],
                "steps": prompt["4"]["inputs"]["steps"], "strength": prompt["4"]["inputs"]["strength"],
                "images": {nid: hashlib.sha256(self.files[n["inputs"]["image"]]).hexdigest()
                           for nid, n in prompt.items() if n["class_type"] == "LoadImage"}}
        name = f"edit_{len(self.finished) + 1:05d}_.png"
        self.outputs[name] = json.dumps(seen, sort_keys=True).encode()
        self.finished.append(pid)
        self.running.remove(pid)
        self.history[pid] = {"outputs": {"9": {"images": [{"filename": name, "subfolder": "", "type": "output"}]}},
                             "status": {"status_str": "success", "completed": True, "messages": []}}
        if self.forget:  # a server restarted with an empty input folder
            self.files = {"default.png": b"DEFAULT"}
        for ws in self.sockets.get(body.get("client_id"), []):
            await ws.send_json({"type": "executing", "data": {"node": None, "prompt_id": pid}})

    async def get_history(self, request):
        pid = request.match_info["pid"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def get_queue(self, request):
        return web.json_response({"queue_running": [[0, p, {}, {}, []] for p in self.running],
                                  "queue_pending": []})

    async def interrupt(self, request):
        body = await request.json()
        self.interrupts.append(body.get("prompt_id"))
        pid = body.get("prompt_id")
        if pid in self.running:
            self.running.remove(pid)
            self.history[pid] = {"outputs": {}, "status": {"status_str": "error", "completed": False, "messages": [
                ["execution_interrupted", {"prompt_id": pid, "node_id": "4", "node_type": "Edit"}]]}}
        return web.json_response({})

    async def view(self, request):
        return web.Response(body=self.outputs[request.query["filename"]])

    async def ws(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        cid = request.query.get("clientId")
        self.sockets[cid].append(ws)
        try:
            async for _ in ws:
                pass
        finally:
            self.sockets[cid].remove(ws)
        return ws


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is not installed: `pip install \"ray[default]>=2.9\"` to run the "
                                            "batch tests")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def servers():
    made = []

    def make(**kw):
        made.append(FakeComfy(**kw))
        return made[-1]
    yield make
    for s in made:
        s.close()


def write_inputs(folder: pathlib.Path) -> pathlib.Path:
    (folder / "wf.json").write_text(json.dumps(WORKFLOW))
    (folder / "a.png").write_bytes(b"AAAA")
    (folder / "b.png").write_bytes(b"BBBB")
    (folder / "sub").mkdir()
    (folder / "sub" / "c.png").write_bytes(b"CCCC")
    return folder / "wf.json"


def write_csv(path: pathlib.Path, header, rows) -> pathlib.Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def edit_rows(n):
    return [[f"e{i}", ["a.png", "b.png", "sub/c.png"][i % 3], f"a cat {i}", 100 + i] for i in range(n)]


FAST = {"row_timeout": 20, "request_timeout": 5, "reconnect_for": 0.5, "probe_every": 0.5, "give_up_after": 5,
        "progress": None, "client_options": {"connect_timeout": 2, "heartbeat": 30, "poll_interval": 0.05}}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def outputs_of(out: pathlib.Path) -> dict:
    """row id -> [the JSON each of its output images holds], from the files on disk (markers excluded)."""
    found = collections.defaultdict(list)
    for p in sorted(out.rglob("*.png")):
        if cb.TMP_DIR not in p.parts:
            found[p.parent.name].append(json.loads(p.read_bytes()))
    return dict(found)


# ------------------------------------------------------------------------------------------------------
# Manifest parsing and resolving (no Ray, no server)
# ------------------------------------------------------------------------------------------------------

def test_columns_resolve_ids_titles_classes_wildcards_and_files(tmp_path):
    write_inputs(tmp_path)
    m = write_csv(tmp_path / "m.csv", ["id", "Source.image", "2.image", "Prompt.text", "*.steps", "Edit.strength",
                                       "seed", "# note"],
                  [["one", "a.png", "sub/c.png", "a cat, 2", "12", "0.25", "7", "anything"],
                   ["", "", "", "", "", "", "", ""],
                   ["three", "a.png", "", '"quoted"', "", "", "", ""]])
    rows = cb.read_manifest(m)
    wf = cb.Workflow(WORKFLOW, OBJECT_INFO, tmp_path)
    for r in rows:
        wf.resolve(r)
    assert [r.error for r in rows] == ["", "", ""]
    assert [r.id for r in rows] == ["one", "row-0002", "three"]
    p = rows[0].prompt
    assert p["1"]["inputs"]["image"] == "sha256:" + sha(b"AAAA")
    assert p["2"]["class_type"] == "LoadImage" and p["2"]["inputs"]["image"] == "sha256:" + sha(b"CCCC")
    assert p["3"]["inputs"]["text"] == "a cat, 2"
    assert (p["4"]["inputs"]["steps"], p["4"]["inputs"]["strength"], p["4"]["inputs"]["seed"]) == (12, 0.25, 7)
    assert rows[0].images == {"1": sha(b"AAAA"), "2": sha(b"CCCC")} and rows[0].seed == 7
    assert rows[1].prompt == WORKFLOW and rows[1].images == {} and rows[1].seed == 1  # empty cells keep values
    assert rows[2].prompt["3"]["inputs"]["text"] == "quoted"
    # the hash follows the resolved prompt: same prompt, same hash; any change, another
    again = cb.read_manifest(m)
    for r in again:
        wf.resolve(r)
    assert [r.hash for r in again] == [r.hash for r in rows] and len({r.hash for r in rows}) == 3
    jl = tmp_path / "m.jsonl"
    jl.write_text(json.dumps({"id": "one", "Source.image": "a.png", "2.image": "sub/c.png", "Prompt.text": "a cat, 2",
                              "*.steps": 12, "Edit.strength": 0.25, "seed": 7}) + "\n\n")
    (j,) = cb.read_manifest(jl)
    wf.resolve(j)
    assert j.hash == rows[0].hash


def test_bad_rows_get_clear_errors_naming_row_and_column(tmp_path):
    write_inputs(tmp_path)
    m = write_csv(tmp_path / "m.csv", ["id", "1.image", "3.text", "4.steps", "seed", "7.text", "4.model",
                                       "4.source", "strength", "3.txt", "*.cfg"],
                  [["ok", "a.png", "x", "", "", "", "", "", "", "", ""],
                   ["missing", "nope.png", "", "", "", "", "", "", "", "", ""],
                   ["escape", "../wf.json", "", "", "", "", "", "", "", "", ""],
                   ["seedbad", "", "", "", "1.5", "", "", "", "", "", ""],
                   ["nonode", "", "", "", "", "x", "", "", "", "", ""],
                   ["noinput", "", "", "", "", "", "x", "", "", "", ""],
                   ["link", "", "", "", "", "", "", "x", "", "", ""],
                   ["bare", "", "", "", "", "", "", "", "0.3", "", ""],
                   ["typo", "", "", "", "", "", "", "", "", "x", ""],
                   ["nowhere", "", "", "", "", "", "", "", "", "", "7"],
                   ["ok", "", "", "", "", "", "", "", "", "", ""],
                   ["bad id!", "", "", "", "", "", "", "", "", "", ""],
                   ["extra", "", "", "", "", "", "", "", "", "", "", "surplus"]])
    rows = cb.read_manifest(m)
    wf = cb.Workflow(WORKFLOW, OBJECT_INFO, tmp_path)
    for r in rows:
        wf.resolve(r)
    err = {r.id: r.error for r in rows[:-3]}
    assert err["ok"] == ""
    assert "row 2 (missing), column '1.image': no file 'nope.png' in the inputs folder" in err["missing"]
    assert "column '1.image': refused" in err["escape"] and "'..'" in err["escape"]
    assert "column 'seed': the seed 1.5 is not a whole number" in err["seedbad"]
    assert "column '7.text': the workflow has no node '7'" in err["nonode"] and "1, 2, 3, 4, 9" in err["nonode"]
    assert "column '4.model': node 4 (Edit) has no input 'model'" in err["noinput"]
    assert "column '4.source'" in err["link"] and "is a connection from node 1" in err["link"]
    assert "column 'strength': not a column this tool knows" in err["bare"] and "*.INPUT" in err["bare"]
    assert "node 3 (Text) has no input 'txt' (its inputs: text)" in err["typo"]
    assert "column '*.cfg': no node of the workflow has an input 'cfg'" in err["nowhere"]
    assert "'ok' is also the id of row 1" in rows[-3].error
    assert "not a usable folder name" in rows[-2].error
    assert "more cells than the header" in rows[-1].error
    jl = tmp_path / "m.jsonl"
    jl.write_text('{"3.text": "fine"}\nnot json\n[1, 2]\n')
    a, b, c = cb.read_manifest(jl)
    assert a.error == "" and "m.jsonl line 2 is not a JSON object" in b.error and "line 3" in c.error
    with pytest.raises(cb.BatchError, match="names column.*twice"):
        cb.read_manifest(write_csv(tmp_path / "d.csv", ["3.text", "3.text"], [["a", "b"]]))


def test_ray_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install \"ray\[default\]>=2.9\""):
        cb._need_ray()


def test_the_node_pack_never_imports_ray():
    files = [REPO / "__init__.py", *(REPO / "nodes").rglob("*.py"), *(REPO / "pixels_core").rglob("*.py")]
    bad = [str(f.relative_to(REPO)) for f in files
           if any(line.strip().startswith(("import ray", "from ray")) for line in f.read_text().splitlines())]
    assert not bad, f"these pack files import Ray (only tools/comfy_batch.py may): {bad}"


# ------------------------------------------------------------------------------------------------------
# Batches on fake servers and a local Ray
# ------------------------------------------------------------------------------------------------------

def test_batch_on_two_servers_then_rerun_skips_and_a_changed_row_reruns(tmp_path, ray_local, servers):
    wf = write_inputs(tmp_path)
    a, b = servers(run_seconds=0.1), servers(run_seconds=0.1)
    m = write_csv(tmp_path / "m.csv", ["id", "1.image", "3.text", "seed"], edit_rows(8))
    out = tmp_path / "out"
    rep = cb.run_batch(wf, m, [a.url, b.url], out, **FAST)
    assert rep.ok and rep.count("done") == 8
    got = outputs_of(out)
    for i, (rid, image, text, seed) in enumerate(edit_rows(8)):
        (seen,) = got[rid]  # exactly one output in each row's folder, and it is that row's
        assert (seen["text"], seen["seed"]) == (text, seed)
        assert seen["images"]["1"] == sha((tmp_path / image).read_bytes())
    assert len(a.prompts) + len(b.prompts) == 8 and a.prompts and b.prompts
    for s in (a, b):  # each distinct file uploaded at most once per server, under its content hash
        assert len(s.uploads) == len(set(s.uploads)) <= 3
        assert all(u.startswith("comfy_batch/") for u in s.uploads)
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["row"] for r in lines] == list(range(1, 9))
    assert set(lines[0]) == set(cb.RESULT_FIELDS)
    for r, (rid, _, _, seed) in zip(lines, edit_rows(8)):
        assert r["status"] == "done" and r["id"] == rid and r["seed"] == seed and r["attempts"] == 1
        assert r["server"] in (a.url, b.url) and r["error"] is None and r["seconds"] >= 0
        assert len(r["outputs"]) == 1 and (out / r["outputs"][0]).is_file()
    marker = json.loads((out / "e0" / cb.MARKER).read_text())
    assert marker["prompt_hash"] == lines[0]["prompt_hash"] and marker["files"][0]["size"] > 0

    sent = len(a.prompts) + len(b.prompts)
    rep2 = cb.run_batch(wf, m, [a.url, b.url], out, **FAST)
    assert rep2.ok and rep2.count("skipped") == 8 and len(a.prompts) + len(b.prompts) == sent
    again = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["outputs"] for r in again] == [r["outputs"] for r in lines]

    rows = edit_rows(8)
    rows[2][2] = "a dog"  # this row changed: it alone runs again, and replaces its old output
    (out / "e5" / rows[5][1].split("/")[-1]).unlink(missing_ok=True)
    next((out / "e4").glob("*.png")).unlink()  # an incomplete row runs again too
    write_csv(m, ["id", "1.image", "3.text", "seed"], rows)
    rep3 = cb.run_batch(wf, m, [a.url, b.url], out, **FAST, results=tmp_path / "r.csv")
    assert [r["id"] for r in rep3.records if r["status"] == "done"] == ["e2", "e4"]
    assert len(a.prompts) + len(b.prompts) == sent + 2
    got = outputs_of(out)
    assert [s["text"] for s in got["e2"]] == ["a dog"] and len(got["e4"]) == 1
    with open(tmp_path / "r.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table].count("skipped") == 6 and table[2]["outputs"].startswith("e2/")


def test_a_server_that_dies_mid_row_has_its_row_retried_elsewhere(tmp_path, ray_local, servers):
    wf = write_inputs(tmp_path)
    dying, ok = servers(run_seconds=0.2, die_on=2), servers(run_seconds=0.2)
    m = write_csv(tmp_path / "m.csv", ["id", "1.image", "3.text", "seed"], edit_rows(6))
    out = tmp_path / "out"
    rep = cb.run_batch(wf, m, [dying.url, ok.url], out, **FAST)
    assert rep.ok and rep.count("done") == 6, rep.summary()
    got = outputs_of(out)
    assert sorted(got) == [f"e{i}" for i in range(6)] and all(len(v) == 1 for v in got.values())
    assert len(dying.finished) == 1 and len(ok.finished) == 5  # nothing ran twice to the end
    moved = [r for r in rep.records if r["attempts"] == 2]
    assert len(moved) == 1 and moved[0]["server"] == ok.url
    assert not list((out / cb.TMP_DIR).iterdir())


def test_a_hanging_server_times_out_its_row_goes_elsewhere_and_is_interrupted(tmp_path, ray_local, servers):
    wf = write_inputs(tmp_path)
    hung, ok = servers(hang_on=1), servers(run_seconds=0.1)
    m = write_csv(tmp_path / "m.csv", ["id", "1.image", "3.text", "seed"], edit_rows(4))
    rep = cb.run_batch(wf, m, [hung.url, ok.url], tmp_path / "out", **{**FAST, "row_timeout": 2})
    assert rep.ok and rep.count("done") == 4, rep.summary()
    assert hung.interrupts == [hung.prompts[0]["prompt_id"]]  # its own prompt, stopped
    (late,) = [r for r in rep.records if r["attempts"] == 2]
    assert late["server"] == ok.url


def test_retries_are_bounded_then_the_row_fails_with_every_reason(tmp_path, ray_local, servers):
    wf = write_inputs(tmp_path)
    a, b = servers(die_on=1), servers(die_on=1)
    m = write_csv(tmp_path / "m.csv", ["id", "3.text"], [["only", "x"]])
    rep = cb.run_batch(wf, m, [a.url, b.url], tmp_path / "out", **{**FAST, "retries": 1})
    (r,) = rep.records
    assert r["status"] == "failed" and r["attempts"] == 2 and not rep.ok
    assert "attempt 1 on" in r["error"] and "attempt 2 on" in r["error"]
    assert {a.url, b.url} <= {u for u in (a.url, b.url) if u in r["error"]}


def test_cli_bad_rows_and_validation_errors_fail_alone(tmp_path, ray_local, servers, capsys):
    wf = write_inputs(tmp_path)
    s = servers()
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps(x) for x in [
        {"id": "good", "1.image": "a.png", "3.text": "fine"},
        {"id": "toomany", "4.steps": 1000},
        {"id": "nofile", "1.image": "gone.png"},
        {"id": "typo", "Prompt.txt": "x"},
        {"id": "good2", "Prompt.text": "also fine", "seed": 5}]) + "\n")
    rc = cb.main([str(wf), str(m), "--server", s.url, "--out", str(tmp_path / "out"), "--set", "*.strength=0.75",
                  "--row-timeout", "20", "--reconnect-for", "1"])
    err = capsys.readouterr().err
    assert rc == 1
    res = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    assert [r["status"] for r in res.values()] == ["done", "failed", "invalid", "invalid", "done"]
    assert "Value bigger than max" in res["toomany"]["error"] and "steps: 1000 > 100" in res["toomany"]["error"]
    assert "no file 'gone.png'" in res["nofile"]["error"]
    assert "column 'Prompt.txt': node 3 (Text) has no input 'txt'" in res["typo"]["error"]
    assert [json.loads(p.read_bytes())["strength"] for p in sorted((tmp_path / "out").glob("good*/*.png"))] == \
        [0.75, 0.75]
    assert "2 done, 0 skipped, 1 failed, 2 invalid, 0 not_run" in err and "rows:" in err
    assert cb.main([str(wf), str(m), "--server", s.url, "--set", "9.nothing=1"]) == 2
    assert "--set" in capsys.readouterr().err


def test_ctrl_c_interrupts_our_prompt_and_marks_what_did_not_run(tmp_path, ray_local, servers):
    wf = write_inputs(tmp_path)
    s = servers(run_seconds=0.8)
    m = write_csv(tmp_path / "m.csv", ["id", "3.text"], [[f"r{i}", f"t{i}"] for i in range(4)])
    out = tmp_path / "out"

    def press_ctrl_c():
        end = time.monotonic() + 20
        while len(s.prompts) < 2 and time.monotonic() < end:  # the first row done, the second one running
            time.sleep(0.05)
        time.sleep(0.3)
        _thread.interrupt_main()
    threading.Thread(target=press_ctrl_c, daemon=True).start()
    rep = cb.run_batch(wf, m, [s.url], out, **FAST)
    assert rep.interrupted and not rep.ok
    statuses = [r["status"] for r in rep.records]
    assert statuses == ["done", "not_run", "not_run", "not_run"], statuses
    assert s.interrupts == [s.prompts[1]["prompt_id"]] and len(s.prompts) == 2
    assert "interrupted (Ctrl-C)" in rep.records[1]["error"] and "not run" in rep.records[3]["error"]
    on_disk = [json.loads(x)["status"] for x in (out / "results.jsonl").read_text().splitlines()]
    assert on_disk == statuses and sorted(outputs_of(out)) == ["r0"]


def test_a_ui_workflow_is_converted_with_the_servers_object_info_and_its_titles_work(tmp_path, ray_local, servers):
    write_inputs(tmp_path)
    s = servers()
    cc = sys.modules["comfy_client"]
    ui = cc.api_to_ui(WORKFLOW, OBJECT_INFO)
    next(n for n in ui["nodes"] if n["id"] == 3)["title"] = "My prompt"
    (tmp_path / "ui.json").write_text(json.dumps(ui))
    m = write_csv(tmp_path / "m.csv", ["My prompt.text", "1.image", "2.image"], [["from the ui", "b.png", "a.png"]])
    rep = cb.run_batch(tmp_path / "ui.json", m, [s.url], tmp_path / "out", **FAST)
    assert rep.ok, rep.summary()
    (seen,) = outputs_of(tmp_path / "out")["row-0001"]
    assert seen["text"] == "from the ui" and seen["images"] == {"1": sha(b"BBBB"), "2": sha(b"AAAA")}
    assert s.prompts[0]["prompt"]["2"]["class_type"] == "LoadImage"  # the PixelsLoadExample took a file


def test_a_server_that_lost_our_uploads_gets_them_again(tmp_path, ray_local, servers):
    wf = write_inputs(tmp_path)
    s = servers(forget=True)
    m = write_csv(tmp_path / "m.csv", ["1.image", "3.text"], [["a.png", "one"], ["a.png", "two"]])
    rep = cb.run_batch(wf, m, [s.url], tmp_path / "out", **FAST)
    assert rep.ok, rep.summary()
    assert len(s.uploads) == 2 and len(set(s.uploads)) == 1 and len(s.finished) == 2
