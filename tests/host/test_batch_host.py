"""tools/comfy_batch.py against two real ComfyUI servers on loopback and a local Ray: a 12-row manifest of a tiny
SD1.5 img2img graph (64 px, 2 steps) survives one server being killed mid-row (every output once, the result
manifest complete, a rerun doing no work), and bad rows get per-row errors (a missing file, an unknown node, a
value ComfyUI's validation refuses) while the good rows run."""
from __future__ import annotations

import collections
import csv
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import pytest

import comfy_client  # tools/ is put on sys.path by this folder's conftest

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
COMFYUI = os.environ.get("COMFYUI_PATH")

CKPT = "v1-5-pruned-emaonly.safetensors"
GRAPH = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a house"},
          "_meta": {"title": "Positive"}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}, "_meta": {"title": "Negative"}},
    "4": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}, "_meta": {"title": "Source"}},
    "5": {"class_type": "ImageScale", "inputs": {"image": ["4", 0], "upscale_method": "bilinear", "width": 64,
                                                 "height": 64, "crop": "center"}},
    "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["1", 2]}},
    "7": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                                               "latent_image": ["6", 0], "seed": 0, "steps": 2, "cfg": 2.0,
                                               "sampler_name": "euler", "scheduler": "normal", "denoise": 0.6}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "batch"}},
}
PICTURES = ["pixels_source.png", "pixels_exemplar.png", "oig_cat.png"]


def _batch_module():
    spec = importlib.util.spec_from_file_location("comfy_batch_host_under_test", REPO / "tools" / "comfy_batch.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cb = _batch_module()


class Comfy:
    """One ComfyUI process with its own base/input/output/user folders, the tiny models and this pack."""

    def __init__(self, base: pathlib.Path, models_dir: pathlib.Path):
        for sub in ("custom_nodes", "user", "output", "input", "models"):
            (base / sub).mkdir(parents=True)
        (base / "custom_nodes" / "comfyui-pixels-edit").symlink_to(REPO, target_is_directory=True)
        for folder in models_dir.iterdir():
            if folder.is_dir():
                (base / "models" / folder.name).symlink_to(folder, target_is_directory=True)
        self.base, self.port = base, comfy_client.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["--base-directory", str(base), "--output-directory", str(base / "output"),
                "--input-directory", str(base / "input"), "--user-directory", str(base / "user"),
                "--database-url", "sqlite:///:memory:", "--disable-auto-launch"]
        if os.environ.get("PIXELS_TEST_GPU") != "1":
            args.append("--cpu")
        self.args, self.proc = args, None

    def start(self):
        with open(self.base / "server.log", "wb") as log:
            env_backup = dict(os.environ)
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (COMFYUI, env_backup.get("PYTHONPATH")) if p)
            try:
                self.proc = comfy_client.start_comfyui(COMFYUI, self.port, self.args, log=log)
            finally:
                os.environ.clear()
                os.environ.update(env_backup)

    def log(self) -> str:
        return (self.base / "server.log").read_text(errors="replace")[-4000:]

    def history_count(self) -> int:
        return len(comfy_client.Client(self.url).get_json("/history?max_items=10000"))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def two_comfy(tmp_path_factory, models_dir):
    servers = [Comfy(tmp_path_factory.mktemp(f"batch-comfyui{i}"), models_dir) for i in range(2)]
    errors = []

    def start(s):
        try:
            s.start()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{s.url}: {e}")
    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(360)
    try:
        assert not errors, f"ComfyUI did not start: {errors}"
        yield servers
    finally:
        for s in servers:
            s.stop()


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is not installed: `pip install \"ray[default]>=2.9\"`")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def prepare(folder: pathlib.Path) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in PICTURES:
        shutil.copy(REPO / "example_workflows" / "inputs" / name, folder / name)
    wf = folder / "graph.json"
    wf.write_text(json.dumps(GRAPH))
    return wf


OPTS = {"row_timeout": 300, "request_timeout": 30, "reconnect_for": 3, "probe_every": 1, "give_up_after": 30,
        "client_options": {"poll_interval": 0.1}}


def test_bad_rows_fail_alone_on_a_real_server(two_comfy, ray_local, tmp_path):
    a = two_comfy[0]
    wf = prepare(tmp_path)
    m = tmp_path / "bad.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in [
        {"id": "good", "Source.image": "oig_cat.png", "Positive.text": "a cat", "seed": 3},
        {"id": "nofile", "Source.image": "missing.png"},
        {"id": "nonode", "12.text": "x"},
        {"id": "refused", "Source.image": "oig_cat.png", "KSampler.sampler_name": "no_such_sampler"},
        {"id": "toofew", "Source.image": "oig_cat.png", "7.steps": 0},
    ]) + "\n")
    rep = cb.run_batch(wf, m, [a.url], tmp_path / "out", **OPTS)
    res = {r["id"]: r for r in rep.records}
    assert [r["status"] for r in rep.records] == ["done", "invalid", "invalid", "failed", "failed"], \
        rep.summary() + "\n" + a.log()
    assert "column 'Source.image': no file 'missing.png'" in res["nofile"]["error"]
    assert "column '12.text': the workflow has no node '12'" in res["nonode"]["error"]
    assert "node 7 (KSampler)" in res["refused"]["error"] and "sampler_name" in res["refused"]["error"]
    assert "node 7 (KSampler)" in res["toofew"]["error"] and "steps" in res["toofew"]["error"]
    assert len(list((tmp_path / "out" / "good").glob("*.png"))) == 1
    on_disk = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in on_disk] == [r["status"] for r in rep.records]


def test_twelve_rows_survive_a_killed_server_and_a_rerun_does_nothing(two_comfy, ray_local, tmp_path):
    a, b = two_comfy
    wf = prepare(tmp_path)
    m = tmp_path / "edits.csv"
    with open(m, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "Source.image", "Positive.text", "seed", "*.denoise"])
        for i in range(12):
            w.writerow([f"edit{i:02d}", PICTURES[i % 3], f"a picture, take {i}", 1000 + i, 0.5 + 0.02 * i])
    out = tmp_path / "out"
    killed = {}

    def kill_b_mid_row():
        """Once three rows are done, kill server B while it runs a prompt."""
        end = time.monotonic() + 600
        client = comfy_client.Client(b.url, request_timeout=5)
        while time.monotonic() < end:
            try:
                done = sum('"status": "done"' in x for x in (out / "results.jsonl").read_text().splitlines())
            except OSError:
                done = 0
            if done >= 3:
                try:
                    if client.get_json("/queue")["queue_running"]:
                        b.proc.kill()
                        killed["at"] = done
                        return
                except (OSError, ValueError):
                    return
            time.sleep(0.02)
    killer = threading.Thread(target=kill_b_mid_row, daemon=True)
    killer.start()
    rep = cb.run_batch(wf, m, [a.url, b.url], out, **OPTS)
    killer.join(10)
    assert killed, "server B was never caught running a prompt"
    assert rep.ok and rep.count("done") == 12, rep.summary() + "\n--- A ---\n" + a.log() + "\n--- B ---\n" + b.log()
    folders = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != cb.TMP_DIR)
    assert folders == [f"edit{i:02d}" for i in range(12)]
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == 12 and all(len(list((out / d).glob("*.png"))) == 1 for d in folders)
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["row"] for r in lines] == list(range(1, 13)) and all(r["status"] == "done" for r in lines)
    assert [r["seed"] for r in lines] == [1000 + i for i in range(12)]
    for r in lines:
        (path,) = r["outputs"]
        assert (out / path).is_file() and r["error"] is None and r["seconds"] > 0
        marker = json.loads((out / r["id"] / cb.MARKER).read_text())
        assert marker["prompt_hash"] == r["prompt_hash"] and marker["server"] == r["server"]
    moved = [r for r in lines if r["attempts"] > 1]
    assert len(moved) == 1 and moved[0]["server"] == a.url, lines
    assert {r["server"] for r in lines} == {a.url, b.url}
    assert len(set(r["prompt_hash"] for r in lines)) == 12
    assert not list((out / cb.TMP_DIR).iterdir())
    assert rep.uploads[a.url] <= 3  # each picture once per server

    before = a.history_count()
    rep2 = cb.run_batch(wf, m, [a.url, b.url], out, **OPTS)
    assert rep2.count("skipped") == 12 and rep2.ok, rep2.summary()
    assert a.history_count() == before
    assert sorted(out.rglob("*.png")) == pngs
    again = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["outputs"] for r in again] == [r["outputs"] for r in lines]
    assert collections.Counter(r["status"] for r in again) == {"skipped": 12}
