"""Benchmark: tools/comfy_batch.py throughput with 1 and with 2 local ComfyUI servers, as a ratio.

Starts two ComfyUI servers from ``COMFYUI_PATH`` (``--cpu`` unless ``PIXELS_TEST_GPU=1``; their own folders in a
temporary directory, an in-memory database) with the tiny test models (built by ``tests/host/tiny_models.py``
into ``$PIXELS_TEST_CACHE``, default ``/tmp/pixels-test-models``, when not there yet) and a local Ray; warms both
up (model load) and then runs the same manifest of a 64 px SD1.5 img2img graph on one server and on both (other
seeds, so ComfyUI's cache never answers for a row). Prints rows/min for each and the ratio 2 servers / 1 server,
end to end and without the batch's fixed start-up (Ray actors, probes, /object_info: timed by rerunning the same
command, which skips every row): about 2 where each server has its own device (or cores), lower where they share.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_batch.py [--rows 12] [--steps 4] [--threads N]
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import comfy_batch  # noqa: E402
import comfy_client  # noqa: E402

PICTURES = ["pixels_source.png", "pixels_exemplar.png", "oig_cat.png"]


def graph(steps: int) -> dict:
    """A 64 px SD1.5 img2img prompt: LoadImage, scale, encode, KSampler, decode, SaveImage."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a house"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
        "5": {"class_type": "ImageScale", "inputs": {"image": ["4", 0], "upscale_method": "bilinear", "width": 64,
                                                     "height": 64, "crop": "center"}},
        "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["6", 0], "seed": 0, "steps": steps, "cfg": 2.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "denoise": 0.6}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "bench"}},
    }


def models(comfyui: str) -> pathlib.Path:
    cache = pathlib.Path(os.environ.get("PIXELS_TEST_CACHE", "/tmp/pixels-test-models"))
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (comfyui, os.environ.get("PYTHONPATH")) if p)}
    subprocess.run([sys.executable, str(REPO / "tests" / "host" / "tiny_models.py"), str(cache)], cwd=comfyui,
                   env=env, check=True, capture_output=True, timeout=1800)
    return cache


def start(comfyui: str, base: pathlib.Path, models_dir: pathlib.Path, threads):
    """A ComfyUI on a free loopback port with its own folders; returns (process, url)."""
    for sub in ("custom_nodes", "user", "output", "input", "models"):
        (base / sub).mkdir(parents=True)
    for folder in models_dir.iterdir():
        if folder.is_dir():
            (base / "models" / folder.name).symlink_to(folder, target_is_directory=True)
    port = comfy_client.free_port()
    args = ["--base-directory", str(base), "--output-directory", str(base / "output"), "--input-directory",
            str(base / "input"), "--user-directory", str(base / "user"), "--database-url", "sqlite:///:memory:",
            "--disable-auto-launch"] + ([] if os.environ.get("PIXELS_TEST_GPU") == "1" else ["--cpu"])
    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (comfyui, saved.get("PYTHONPATH")) if p)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        with open(base / "server.log", "wb") as log:
            proc = comfy_client.start_comfyui(comfyui, port, args, log=log)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return proc, f"http://127.0.0.1:{port}"


def manifest(path: pathlib.Path, rows: int, seed0: int) -> pathlib.Path:
    lines = [{"id": f"r{i:03d}", "4.image": PICTURES[i % 3], "2.text": f"take {i}", "seed": seed0 + i}
             for i in range(rows)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def timed(wf, man, urls, out) -> tuple[float, float]:
    """Wall seconds of the batch, and the median seconds one row took on its server."""
    t0 = time.monotonic()
    rep = comfy_batch.run_batch(wf, man, urls, out, progress=None)
    if not rep.ok:
        raise SystemExit("the batch failed:\n" + rep.summary())
    return time.monotonic() - t0, statistics.median(r["seconds"] for r in rep.records)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=12)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS for each server (default: torch's own)")
    args = ap.parse_args()
    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui:
        raise SystemExit("set COMFYUI_PATH to a ComfyUI checkout (this benchmark starts two servers from it)")
    ray = comfy_batch._need_ray()
    models_dir = models(comfyui)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_batch_"))
    procs = []
    try:
        got = [None, None]

        def go(i):
            got[i] = start(comfyui, tmp / f"server{i}", models_dir, args.threads)
        ts = [threading.Thread(target=go, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if None in got:
            raise SystemExit("a ComfyUI server did not start; see the server.log files under " + str(tmp))
        procs = [p for p, _ in got]
        urls = [u for _, u in got]
        for name in PICTURES:
            shutil.copy(REPO / "example_workflows" / "inputs" / name, tmp / name)
        wf = tmp / "graph.json"
        wf.write_text(json.dumps(graph(args.steps)))
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        for i, url in enumerate(urls):  # load the model on each server before timing anything
            timed(wf, manifest(tmp / f"warm{i}.jsonl", 1, 10 ** 6 + i), [url], tmp / f"warm{i}")
        one, row1 = timed(wf, manifest(tmp / "one.jsonl", args.rows, 0), urls[:1], tmp / "out1")
        two, row2 = timed(wf, manifest(tmp / "two.jsonl", args.rows, 10 ** 4), urls, tmp / "out2")
        # the fixed cost of a batch (Ray actors, probes, /object_info): the same command again skips every row
        fixed1, _ = timed(wf, tmp / "one.jsonl", urls[:1], tmp / "out1")
        fixed2, _ = timed(wf, tmp / "two.jsonl", urls, tmp / "out2")
        ray.shutdown()
        print(f"comfy_batch: {args.rows} rows of a 64 px SD1.5 img2img graph ({args.steps} steps), "
              f"{'GPU' if os.environ.get('PIXELS_TEST_GPU') == '1' else 'CPU'}, {os.cpu_count()} cores")
        steady1, steady2 = max(one - fixed1, 1e-3), max(two - fixed2, 1e-3)
        print(f"  1 server : {60 * args.rows / one:.1f} rows/min ({60 * args.rows / steady1:.1f} without the "
              f"batch's fixed start-up)")
        print(f"  2 servers: {60 * args.rows / two:.1f} rows/min ({60 * args.rows / steady2:.1f} without it)")
        print(f"  throughput ratio, 2 servers / 1 server: {one / two:.2f}x end to end, {steady1 / steady2:.2f}x "
              f"without the fixed start-up")
        print(f"  a row's own time on its server, 2 servers / 1 server: {row2 / row1:.2f}x (above 1 where the "
              f"servers share cores or a device)")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
