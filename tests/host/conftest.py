"""Host tests: a real ComfyUI (``COMFYUI_PATH``) with this pack installed, driven over its HTTP API.

Where ``COMFYUI_PATH`` is unset every test here is skipped with that reason (shown by ``-ra``). Where it is set:

- tiny random-weight models are built once by ``tiny_models.py`` (in a subprocess that imports ComfyUI) into
  ``$PIXELS_TEST_CACHE`` (default ``/tmp/pixels-test-models``) and reused by later runs;
- one ComfyUI server per session is started with ``--cpu`` (unless ``PIXELS_TEST_GPU=1``), latent previews on
  (``latent2rgb``), its own base, output and user directories in pytest's temporary folder, an in-memory database,
  and this repository linked in as ``custom_nodes/comfyui-pixels-edit``;
- the ``comfy`` fixture is a ``tools/comfy_client.Client`` for that server, with ``comfy.log()`` (the server's
  output so far) and ``comfy.object_info()`` cached.

``PYTHONPATH`` passes through to ComfyUI (useful for a stand-in torchvision where the installed one is broken).
"""
from __future__ import annotations

import functools
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tools"))
import comfy_client  # noqa: E402

COMFYUI = os.environ.get("COMFYUI_PATH")
SKIP_REASON = "COMFYUI_PATH not set: host tests need a real ComfyUI checkout (see README, 'Tests')"


def pytest_collection_modifyitems(config, items):
    if COMFYUI:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in pathlib.Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (COMFYUI, env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="session")
def models_dir() -> pathlib.Path:
    cache = pathlib.Path(os.environ.get("PIXELS_TEST_CACHE", "/tmp/pixels-test-models"))
    cache.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, str(HERE / "tiny_models.py"), str(cache)], cwd=COMFYUI, env=_env(),
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"building the tiny test models failed:\n{proc.stdout}\n{proc.stderr}"
    return cache


class Server(comfy_client.Client):
    def __init__(self, url, log_path):
        super().__init__(url, timeout=900)
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @functools.lru_cache(maxsize=None)
    def object_info(self) -> dict:
        return super().object_info()

    def interrupted_run(self, prompt, after: float = 3.0, timeout: float = 300) -> tuple[str, float]:
        """Queue ``prompt``, interrupt it ``after`` seconds into its execution, and return ComfyUI's error text
        and the seconds from queueing to the end. Fails if the prompt finishes instead of being interrupted."""
        pid = self.queue(prompt)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120 and not self.get_json("/queue")["queue_running"]:
            time.sleep(0.1)
        time.sleep(after)
        threading.Thread(target=self.interrupt).start()
        with pytest.raises(comfy_client.WorkflowError) as err:
            comfy_client.Client.wait(self, pid, timeout=timeout)
        return str(err.value), time.monotonic() - t0

    def run(self, prompt, timeout=None):
        try:
            return super().run(prompt, timeout)
        except comfy_client.WorkflowError as e:
            raise AssertionError(f"ComfyUI failed the prompt: {e}\n--- server log tail ---\n{self.log()[-4000:]}")

    def latent(self, outputs, node: str, index: int = 0):
        """The tensor a ``SaveLatent`` node ``node`` wrote (its ``latents`` output), loaded from the server."""
        import safetensors.torch
        entry = outputs[node]["latents"][index]
        return safetensors.torch.load(self.download(entry))["latent_tensor"].double()

    def run_watched(self, prompt, timeout=None, on_event=None):
        try:
            return super().run_watched(prompt, timeout, on_event)
        except comfy_client.WorkflowError as e:
            raise AssertionError(f"ComfyUI failed the prompt: {e}\n--- server log tail ---\n{self.log()[-4000:]}")


@pytest.fixture(scope="session")
def comfy(tmp_path_factory, models_dir):
    base = tmp_path_factory.mktemp("comfyui")
    for sub in ("custom_nodes", "user", "output", "input", "models"):
        (base / sub).mkdir()
    (base / "custom_nodes" / "comfyui-pixels-edit").symlink_to(REPO, target_is_directory=True)
    # test-only nodes (known-answer model, NaN masks); never part of the pack
    (base / "custom_nodes" / "pixels-test-nodes").symlink_to(HERE / "test_nodes", target_is_directory=True)
    for folder in models_dir.iterdir():
        if folder.is_dir():
            (base / "models" / folder.name).symlink_to(folder, target_is_directory=True)
    port = comfy_client.free_port()
    args = ["--base-directory", str(base), "--output-directory", str(base / "output"),
            "--input-directory", str(base / "input"), "--user-directory", str(base / "user"),
            "--database-url", "sqlite:///:memory:", "--disable-auto-launch", "--preview-method", "latent2rgb"]
    if os.environ.get("PIXELS_TEST_GPU") != "1":
        args.append("--cpu")
    log_path = base / "server.log"
    with open(log_path, "wb") as log:
        env_backup = dict(os.environ)
        os.environ.update(_env())
        try:
            proc = comfy_client.start_comfyui(COMFYUI, port, args, log=log)
        finally:
            os.environ.clear()
            os.environ.update(env_backup)
    try:
        yield Server(f"http://127.0.0.1:{port}", log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
