"""Run one workflow over a manifest of edits (CSV or JSON Lines, one edit a row) across many ComfyUI servers, on Ray.

    python tools/comfy_batch.py WORKFLOW MANIFEST --server http://HOST1:8188 --server http://HOST2:8188 --out results/
    python tools/comfy_batch.py WORKFLOW edits.csv --server URL --ray-address auto      # an existing Ray cluster

Each row becomes one prompt: the workflow (UI or API JSON) with the row's values set, in the same syntax as
``comfy_client.py run --set NODE.INPUT=VALUE`` (the column header is ``NODE.INPUT``, the cell is ``VALUE``):

- ``NODE.INPUT``: NODE is a node id (``6``), a node title, or a class name only one node has (``KSampler``). A cell
  is parsed as JSON where it parses (``20``, ``0.5``, ``true``), else taken as text; an empty CSV cell (a JSON
  ``null``) leaves the workflow's value. For the ``image`` input of a ``LoadImage`` or ``PixelsLoadExample`` node
  the value is a file, relative to ``--inputs`` (default: the manifest's folder), uploaded once per server (by
  content hash, as ``comfy_batch/<hash>-<name>``); a ``PixelsLoadExample`` given a file becomes a ``LoadImage``.
- ``*.INPUT``: that input on every node that has it (``*.steps``, ``*.strength``).
- ``seed``: every ``seed``/``noise_seed`` input (as ``--seed``). ``id``: the row's name and output folder
  (letters, digits, ``.``, ``_``, ``-``; default ``row-0001``, ...). Columns starting with ``#`` are ignored.

Every row runs on some server: Ray holds an actor per server (restarted by Ray when its process dies); a row whose
server dies, hangs or times out (``--row-timeout``) is retried on another server (``--retries`` times, then marked
failed with each attempt's reason); a row ComfyUI refuses or fails (a validation error, a node error) is failed at
once. Outputs land in ``--out/<id>/`` (the server's subfolder/filename below it), written to a temporary folder
first and moved into place with a done-marker (``.comfy_batch_done.json``: the hash of the row's resolved prompt and
each file's size) once all are saved; a rerun skips rows whose marker matches and whose files are all there, and
reruns a row whose prompt changed. The result manifest (``--results``, default ``--out/results.jsonl``; ``.csv`` for
CSV) has one line a row: row, id, status (``done``, ``skipped``, ``failed``, ``invalid``, ``not_run``), server,
seed, outputs, seconds, attempts, error, prompt_hash; it is rewritten as the batch goes and at the end. Ctrl-C
interrupts this batch's running prompts (and no others), keeps what finished, marks the rest ``not_run`` and
exits with 130. Exit code 1 when a row failed or was invalid, 2 for a bad command line or workflow.

Ray is an optional extra (``pip install "ray[default]>=2.9"``); it is imported only when a batch runs. Without
``--ray-address`` (or ``RAY_ADDRESS``) a local Ray with one CPU and no dashboard is started for the batch. On a
cluster each server's actor is placed (softly) on the Ray node whose address the URL names, a loopback URL on this
machine; the driver keeps the outputs, so only the driver needs ``--out``, the manifest and the input files (they
reach the actors through Ray's object store), and no worker needs ``tools/``.

Or as a library: ``run_batch(workflow, manifest, servers, out_dir)`` returns a :class:`BatchReport`.
"""
from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time
import urllib.parse
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import comfy_client  # noqa: E402

MARKER = ".comfy_batch_done.json"
TMP_DIR = ".comfy_batch_tmp"
UPLOAD_SUBFOLDER = "comfy_batch"
FILE_NODES = {"LoadImage": "image", "PixelsLoadExample": "image"}
SEED_INPUTS = ("seed", "noise_seed")
RESULT_FIELDS = ("row", "id", "status", "server", "seed", "outputs", "seconds", "attempts", "error", "prompt_hash")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class BatchError(ValueError):
    """The batch as a whole cannot run (a bad workflow, manifest file, --set or server list)."""


def _need_ray():
    """The ray module, or ImportError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError("tools/comfy_batch.py needs Ray: `pip install \"ray[default]>=2.9\"` (or the pack's "
                          "`batch` extra) in the Python that runs it") from e
    return ray


# ----------------------------------------------------------------------------------------------
# The manifest: rows -> resolved prompts
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Row:
    """One manifest row: its number (1-based), id, raw cells, and once resolved its prompt or error."""
    number: int
    id: str
    cells: dict
    where: str = ""
    prompt: dict | None = None
    images: dict = dataclasses.field(default_factory=dict)  # node id -> content hash
    hash: str = ""
    seed: int | None = None
    error: str = ""


def read_manifest(path) -> list[Row]:
    """The rows of a CSV (header line first) or JSON Lines manifest; a row that cannot be read keeps an error."""
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise BatchError(f"cannot read the manifest {path}: {e}") from None
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson", ".json") or (
        path.suffix.lower() != ".csv" and text.lstrip().startswith("{"))
    rows: list[Row] = []
    if is_jsonl:
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            row = Row(len(rows) + 1, "", {}, where=f"line {line_no}")
            try:
                cells = json.loads(line)
                if not isinstance(cells, dict):
                    raise ValueError("not a JSON object")
                row.cells = cells
            except ValueError as e:
                row.error = (f"row {row.number}: {path.name} line {line_no} is not a JSON object ({e}); write one "
                             f"{{...}} per line")
            rows.append(row)
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""), restval=None)
        if not reader.fieldnames:
            raise BatchError(f"the manifest {path} is empty: its first line must name the columns")
        header = [(f or "").strip() for f in reader.fieldnames]
        if len(set(header)) != len(header):
            dup = sorted({h for h in header if header.count(h) > 1})
            raise BatchError(f"the manifest {path} names column(s) {', '.join(map(repr, dup))} twice")
        for raw in reader:
            row = Row(len(rows) + 1, "", {}, where=f"line {reader.line_num}")
            if None in raw:
                row.error = (f"row {row.number}: {path.name} line {reader.line_num} has more cells than the header "
                             f"has columns; quote cells that contain commas")
            row.cells = {(k or "").strip(): ("" if v is None else v) for k, v in raw.items() if k is not None}
            row.cells = {k: _csv_value(k, v) for k, v in row.cells.items()}
            rows.append(row)
    width = max(4, len(str(len(rows))))
    seen: dict[str, int] = {}
    for row in rows:
        rid = row.cells.get("id") if isinstance(row.cells, dict) else None
        if rid in (None, ""):
            row.id = f"row-{row.number:0{width}d}"
        else:
            row.id = str(rid)
            if not _ID_RE.match(row.id) or row.id in (TMP_DIR,) or len(row.id) > 120:
                row.error = row.error or (f"row {row.number}, column 'id': {row.id!r} is not a usable folder name: "
                                          f"use letters, digits, '.', '_' and '-' (starting with a letter or digit)")
        if row.id in seen and not row.error:
            row.error = (f"row {row.number}, column 'id': {row.id!r} is also the id of row {seen[row.id]}; ids must "
                         f"be unique")
        seen.setdefault(row.id, row.number)
    return rows


def _csv_value(column: str, raw: str):
    """A CSV cell as a value: None when empty (keep the workflow's), text for ids and files, else JSON or text."""
    if raw.strip() == "":
        return None
    if column == "id" or column.endswith(".image") or column.startswith("#"):
        return raw.strip() if column == "id" else raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class Workflow:
    """An API prompt plus what resolving rows needs: node titles, the server's /object_info, the inputs folder."""

    def __init__(self, api: dict, object_info: dict | None, inputs_dir, titles: dict | None = None):
        self.api, self.info = api, object_info or {}
        self.inputs_dir = pathlib.Path(inputs_dir)
        self.titles: dict[str, list[str]] = collections.defaultdict(list)
        for nid, node in api.items():
            title = (titles or {}).get(nid) or (node.get("_meta") or {}).get("title")
            if title:
                self.titles[str(title)].append(nid)
        self.classes: dict[str, list[str]] = collections.defaultdict(list)
        for nid, node in api.items():
            self.classes[node.get("class_type", "")].append(nid)
        self.files: dict[str, pathlib.Path] = {}  # content hash -> local file

    def _ids(self) -> str:
        return ", ".join(sorted(self.api, key=lambda k: (len(k), k)))

    def node(self, ref: str) -> str:
        """The node id a column's NODE part means: an id, a unique title, or a class only one node has."""
        if ref in self.api:
            return ref
        for kind, table in (("title", self.titles), ("class", self.classes)):
            ids = table.get(ref)
            if ids and len(ids) == 1:
                return ids[0]
            if ids:
                raise ValueError(f"{kind} {ref!r} names nodes {', '.join(sorted(ids))}: use the node id instead")
        raise ValueError(f"the workflow has no node {ref!r} (by id, title or class; node ids: {self._ids()})")

    def inputs_of(self, nid: str) -> set[str]:
        """The input names node ``nid`` has: those in the prompt plus those its class declares in /object_info."""
        node = self.api[nid]
        names = set(node.get("inputs", {}))
        spec = self.info.get(node.get("class_type"), {}).get("input", {})
        for group in ("required", "optional"):
            names.update((spec.get(group) or {}).keys())
        return names

    def set_input(self, prompt: dict, nid: str, name: str, value, column: str) -> None:
        """Set one widget value after checking the node has that input and it is not a connection."""
        node = self.api[nid]
        if name not in self.inputs_of(nid):
            raise ValueError(f"node {nid} ({node.get('class_type')}) has no input {name!r} "
                             f"(its inputs: {', '.join(sorted(self.inputs_of(nid))) or 'none'})")
        current = node.get("inputs", {}).get(name)
        if isinstance(current, list) and len(current) == 2 and isinstance(current[0], str):
            raise ValueError(f"input {name!r} of node {nid} ({node.get('class_type')}) is a connection from node "
                             f"{current[0]}, not a widget value; it cannot be set from a manifest")
        prompt[nid]["inputs"][name] = value

    def hash_file(self, value, column: str) -> tuple[str, pathlib.Path]:
        """The content hash and path of the input file a cell names (relative to the inputs folder)."""
        if not isinstance(value, str):
            raise ValueError(f"the value {value!r} is not a file name")
        try:
            path = comfy_client.safe_input_path(self.inputs_dir, value)
        except comfy_client.UnsafePathError as e:
            raise ValueError(f"refused: {e}; name files relative to --inputs") from None
        if not path.is_file():
            raise ValueError(f"no file {value!r} in the inputs folder {self.inputs_dir.resolve()} (file columns are "
                             f"relative to --inputs, default the manifest's folder)")
        h = hashlib.sha256(path.read_bytes()).hexdigest()
        self.files.setdefault(h, path)
        return h, path

    def resolve(self, row: Row, sets=()) -> None:
        """Fill ``row.prompt``, ``row.images``, ``row.hash`` and ``row.seed``, or ``row.error`` naming the column."""
        if row.error:
            return
        prompt = json.loads(json.dumps(self.api))
        images: dict[str, str] = {}
        for column, value in list(sets) + [(k, v) for k, v in row.cells.items()]:
            try:
                if value is None or column == "id" or column.startswith("#"):
                    continue
                if column == "seed":
                    if isinstance(value, bool) or not isinstance(value, int):
                        raise ValueError(f"the seed {value!r} is not a whole number")
                    if not any(isinstance(n["inputs"].get(k), int) for n in prompt.values() for k in SEED_INPUTS):
                        raise ValueError("the workflow has no seed or noise_seed input to set")
                    comfy_client.set_seed(prompt, value)
                    continue
                ref, dot, name = column.rpartition(".")
                if not dot or not ref or not name:
                    raise ValueError("not a column this tool knows: use NODE.INPUT (a node id, title or class), "
                                     "*.INPUT, seed, id, or start the name with '#' for a note")
                nids = [n for n in prompt if name in self.inputs_of(n)] if ref == "*" else [self.node(ref)]
                if not nids:
                    raise ValueError(f"no node of the workflow has an input {name!r}")
                for nid in nids:
                    if FILE_NODES.get(prompt[nid].get("class_type")) == name:
                        h, path = self.hash_file(value, column)
                        if prompt[nid]["class_type"] != "LoadImage":
                            prompt[nid] = {"class_type": "LoadImage", "inputs": {"image": path.name},
                                           **({"_meta": prompt[nid]["_meta"]} if "_meta" in prompt[nid] else {})}
                        prompt[nid]["inputs"]["image"] = "sha256:" + h
                        images[nid] = h
                    else:
                        self.set_input(prompt, nid, name, value, column)
            except ValueError as e:
                where = f"column {column!r}" if column in row.cells else f"--set {column}"
                row.error = f"row {row.number} ({row.id}), {where}: {e}"
                return
        row.prompt, row.images = prompt, images
        row.hash = hashlib.sha256(json.dumps(prompt, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        row.seed = next((n["inputs"][k] for _, n in sorted(prompt.items(), key=lambda kv: (len(kv[0]), kv[0]))
                         for k in SEED_INPUTS if isinstance(n["inputs"].get(k), int)), None)


def parse_sets(assignments) -> list[tuple[str, object]]:
    """``NODE.INPUT=VALUE`` strings (as ``--set``) as (column, value) pairs, the value parsed like a CSV cell."""
    out = []
    for a in assignments:
        key, eq, raw = a.partition("=")
        if not eq or not key.strip():
            raise BatchError(f"--set {a!r}: write NODE.INPUT=VALUE")
        out.append((key.strip(), _csv_value(key.strip(), raw)))
    return out


# ----------------------------------------------------------------------------------------------
# Done-markers: a row's outputs are complete, for this prompt
# ----------------------------------------------------------------------------------------------

def done_record(out_dir, row: Row) -> dict | None:
    """The marker of a row whose outputs are all there for the same prompt hash, else None."""
    folder = pathlib.Path(out_dir) / row.id
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("prompt_hash") != row.hash or not marker.get("files"):
        return None
    for f in marker["files"]:
        try:
            p = comfy_client.safe_output_path(folder, *f["path"].rpartition("/")[::2])
            if p.stat().st_size != f["size"]:
                return None
        except (OSError, KeyError, TypeError, ValueError):
            return None
    return marker


def commit_outputs(out_dir, row: Row, files: list, server: str, seconds: float) -> list[str]:
    """Write a row's files and then its marker into a temporary folder, and move that into ``out_dir/<id>``."""
    out = pathlib.Path(out_dir)
    tmp_root = out / TMP_DIR
    tmp = tmp_root / f"{row.id}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    entries = []
    for rel, data in files:
        sub, _, name = rel.rpartition("/")
        dest = comfy_client.safe_output_path(tmp, sub, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        entries.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    entries.sort(key=lambda e: e["path"])
    marker = {"row": row.number, "id": row.id, "prompt_hash": row.hash, "server": server, "seed": row.seed,
              "seconds": round(seconds, 3), "files": entries}
    (tmp / (MARKER + ".part")).write_text(json.dumps(marker, indent=1))
    os.replace(tmp / (MARKER + ".part"), tmp / MARKER)
    final = out / row.id
    if final.exists():
        old = tmp_root / f"{row.id}-old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, final)
    return [f"{row.id}/{e['path']}" for e in entries]


def write_results(path, records: list[dict]) -> None:
    """The result manifest, JSON Lines or (``.csv``) CSV, written to a temporary file and renamed into place."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        if path.suffix.lower() == ".csv":
            w = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
            w.writeheader()
            for r in records:
                w.writerow({**r, "outputs": ";".join(r["outputs"])})
        else:
            for r in records:
                f.write(json.dumps({k: r[k] for k in RESULT_FIELDS}) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# One server: a Ray actor that uploads, runs, downloads
# ----------------------------------------------------------------------------------------------

class ServerWorker:
    """Runs rows on one ComfyUI server (as a Ray actor); caches its uploads by content hash."""

    def __init__(self, url: str, client_options: dict):
        self.url, self.options = url, dict(client_options)
        self.uploaded: dict[str, str] = {}
        self.clients: dict[str, comfy_client.Client] = {}
        self.uploads = 0

    def _client(self, timeout: float) -> comfy_client.Client:
        return comfy_client.Client(self.url, timeout, **self.options)

    def ping(self) -> bool:
        """True when the server answers GET /queue."""
        c = comfy_client.Client(self.url, 10, **{**self.options, "request_timeout": 10, "connect_timeout": 5})
        c.get_json("/queue")
        return True

    def object_info(self) -> dict:
        return self._client(60).object_info()

    def stats(self) -> dict:
        return {"uploads": self.uploads, "cached": len(self.uploaded)}

    def run_row(self, key: str, prompt: dict, images: dict, files: dict, timeout: float) -> dict:
        """Upload the row's files (once per server), run its prompt and return its output files as bytes."""
        import ray
        t0 = time.monotonic()
        client = self._client(timeout)
        self.clients[key] = client
        try:
            for again in (False, True):
                prompt = json.loads(json.dumps(prompt))
                cached = {self.uploaded[h] for h in images.values() if h in self.uploaded}
                for nid, h in sorted(images.items()):
                    if h not in self.uploaded:
                        name, box = files[h]
                        with tempfile.TemporaryDirectory() as d:
                            p = pathlib.Path(d) / name
                            p.write_bytes(ray.get(box[0]))
                            self.uploaded[h] = client.upload(p, f"{h[:16]}-{name}", subfolder=UPLOAD_SUBFOLDER)
                            self.uploads += 1
                    prompt[nid]["inputs"]["image"] = self.uploaded[h]
                try:
                    outputs, _ = client.run_watched(prompt, timeout)
                    break
                except comfy_client.WorkflowError as e:  # a server that lost our earlier uploads: upload again
                    if again or not any(name in str(e) for name in cached):
                        raise
                    self.uploaded = {h: n for h, n in self.uploaded.items() if n not in cached}
            with tempfile.TemporaryDirectory() as d:
                saved, refused = comfy_client.save_outputs(client, outputs, d)
                got = [(p.relative_to(pathlib.Path(d).resolve()).as_posix(), p.read_bytes()) for p in saved]
            return {"status": "ok", "files": got, "refused": refused, "seconds": time.monotonic() - t0,
                    "prompt_id": client.last_prompt_id}
        except comfy_client.WorkflowError as e:
            return {"status": "workflow", "error": f"ComfyUI refused or failed the prompt: {e}",
                    "seconds": time.monotonic() - t0}
        except comfy_client.ServerError as e:
            if e.status < 500:
                return {"status": "workflow", "error": str(e), "seconds": time.monotonic() - t0}
            self.uploaded.clear()
            return {"status": "transport", "error": str(e)}
        except ValueError as e:  # a name the client refuses to send: the row's fault
            return {"status": "workflow", "error": str(e), "seconds": time.monotonic() - t0}
        except OSError as e:  # connection lost, timeout, TLS: the server's fault, not the row's
            self.uploaded.clear()  # it may come back as a fresh server without our uploads
            if client.last_prompt_id:  # so that it does not run on, after the row went to another server
                quick = comfy_client.Client(self.url, 10, **{**self.options, "request_timeout": 5,
                                                             "connect_timeout": 3})
                try:
                    quick.interrupt(client.last_prompt_id)
                except (OSError, ValueError):
                    pass
            return {"status": "transport", "error": f"{type(e).__name__}: {e}"}
        finally:
            self.clients.pop(key, None)

    def stop(self, key: str) -> str | None:
        """Interrupt (or unqueue) the prompt row ``key`` queued, and no other."""
        client = self.clients.get(key)
        if client is None or not client.last_prompt_id:
            return None
        try:
            return client.interrupt(client.last_prompt_id)
        except (OSError, ValueError) as e:
            return f"could not interrupt: {e}"


# ----------------------------------------------------------------------------------------------
# The batch
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class BatchReport:
    """What a batch did: one record per row (as in the result manifest), where that was written, and totals."""
    records: list
    results_path: pathlib.Path
    seconds: float
    interrupted: bool = False
    uploads: dict = dataclasses.field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(r["status"] in ("done", "skipped") for r in self.records)

    def summary(self) -> str:
        counts = collections.Counter(r["status"] for r in self.records)
        per = collections.Counter(r["server"] for r in self.records if r["status"] == "done")
        parts = [f"{counts.get(s, 0)} {s}" for s in ("done", "skipped", "failed", "invalid", "not_run")]
        lines = [f"batch: {len(self.records)} rows: {', '.join(parts)} in {self.seconds:.1f} s"
                 + (" (interrupted)" if self.interrupted else "")]
        for url in sorted(per):
            lines.append(f"  {url}: {per[url]} rows" + (f", {self.uploads[url]} uploads" if url in self.uploads
                                                          else ""))
        for r in self.records:
            if r["status"] in ("failed", "invalid"):
                lines.append(f"  {r['status']} {r['id']}: {r['error'].splitlines()[0] if r['error'] else ''}")
        lines.append(f"results: {self.results_path}")
        return "\n".join(lines)


class Progress:
    """A one-line progress bar on a text stream: rows finished of all, failed, rate and time left."""

    def __init__(self, total: int, stream=None, every: float = 5.0):
        self.total, self.stream, self.every = total, stream, every
        self.t0, self.last = time.monotonic(), 0.0
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def update(self, records: list[dict], ran: int, final: bool = False) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not final and now - self.last < (0.2 if self.tty else self.every):
            return
        self.last = now
        c = collections.Counter(r["status"] for r in records)
        finished = sum(c.get(s, 0) for s in ("done", "skipped", "failed", "invalid", "not_run"))
        elapsed = now - self.t0
        rate = ran / elapsed if elapsed > 0 else 0.0
        left = self.total - finished
        eta = f"{left / rate:.0f} s" if rate > 0 and left else ("0 s" if not left else "?")
        width = 24
        filled = int(width * finished / self.total) if self.total else width
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {finished}/{self.total} rows: {c.get('done', 0)} done, "
                f"{c.get('skipped', 0)} skipped, {c.get('failed', 0) + c.get('invalid', 0)} failed, "
                f"{c.get('running', 0)} running | {rate * 60:.1f} rows/min | {eta} left")
        self.stream.write(("\r" + line + " " * 4) if self.tty else line + "\n")
        if final and self.tty:
            self.stream.write("\n")
        self.stream.flush()


def _record(row: Row, status: str, **kw) -> dict:
    rec = {"row": row.number, "id": row.id, "status": status, "server": None, "seed": row.seed, "outputs": [],
           "seconds": None, "attempts": 0, "error": row.error or None, "prompt_hash": row.hash or None}
    rec.update(kw)
    return rec


def _init_ray(ray, ray_address, num_cpus):
    """Connect to the cluster at ``ray_address`` (or $RAY_ADDRESS), else start a small local Ray; True if started."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": "WARNING"}
    if ray_address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=ray_address or os.environ["RAY_ADDRESS"], **quiet)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)
    return True


def _placement(ray, url: str) -> dict:
    """Ray options that put a server's actor on the server's own machine when it is a Ray node (soft), so that
    loopback servers (127.0.0.1) are driven from this machine and a server on node X from node X."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        if host in ("127.0.0.1", "localhost", "::1"):
            node = ray.get_runtime_context().get_node_id()
        else:
            node = {n.get("NodeManagerAddress"): n.get("NodeID") for n in ray.nodes() if n.get("Alive")}.get(host)
    except Exception:  # noqa: BLE001 - an older or client-mode Ray: let Ray place it
        return {}
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True)} if node else {}


def _short(e: BaseException) -> str:
    """An exception as one line (Ray's wrapped errors carry a traceback; keep the cause's last line)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:500]


class _Scheduler:
    """The driver's loop: hands rows to free live servers, retries a lost row elsewhere, probes dead servers."""

    def __init__(self, ray, pool, todo, records, refs, out, results_path, *, retries, row_timeout, guard,
                 give_up_after, probe_every, bar):
        self.ray, self.pool, self.todo, self.refs, self.out = ray, pool, todo, refs, out
        self.records, self.by_number = records, {r["row"]: r for r in records}
        self.results_path, self.retries, self.row_timeout, self.guard = results_path, retries, row_timeout, guard
        self.give_up_after, self.probe_every, self.bar = give_up_after, probe_every, bar
        self.tried: dict[int, list] = collections.defaultdict(list)  # row number -> [(server, reason)]
        self.inflight: dict = {}  # ref -> (row, server, deadline)
        self.ran, self.all_down_since, self.last_write = 0, None, 0.0

    def finish(self, row: Row, status: str, **kw) -> None:
        self.by_number[row.number].update(_record(row, status, attempts=len(self.tried[row.number]), **kw))

    def pick(self, server) -> Row | None:
        """The next row for ``server``: one not tried there yet, else one that no other live server is new to."""
        others = [s["url"] for s in self.pool if s["up"] and s is not server]
        for row in self.todo:
            if server["url"] not in {u for u, _ in self.tried[row.number]}:
                return row
        for row in self.todo:
            if all(u in {t for t, _ in self.tried[row.number]} for u in others):
                return row
        return None

    def retry(self, row: Row, server, reason: str) -> None:
        """Put a row back for another server, or fail it once it has had ``retries`` retries."""
        self.tried[row.number].append((server["url"], reason))
        if len(self.tried[row.number]) > self.retries:
            self.finish(row, "failed", server=server["url"], error="; ".join(
                f"attempt {i} on {u}: {r}" for i, (u, r) in enumerate(self.tried[row.number], 1)))
            self.ran += 1
        else:
            self.by_number[row.number].update(status="pending", server=None)
            self.todo.appendleft(row)

    def settle(self, row: Row, server, res: dict) -> None:
        """Act on what a server's ``run_row`` returned."""
        if res["status"] == "ok":
            self.tried[row.number].append((server["url"], "ok"))
            if res.get("refused") or not res["files"]:
                self.finish(row, "failed", server=server["url"], seconds=round(res["seconds"], 3), error="; ".join(
                    res.get("refused") or ["the prompt ran but produced no output image (type 'output'): does "
                                           "the workflow have a SaveImage node?"]))
            else:
                outputs = commit_outputs(self.out, row, res["files"], server["url"], res["seconds"])
                self.finish(row, "done", server=server["url"], seconds=round(res["seconds"], 3), outputs=outputs)
            self.ran += 1
        elif res["status"] == "workflow":
            self.tried[row.number].append((server["url"], "refused"))
            self.finish(row, "failed", server=server["url"], error=res["error"],
                        seconds=round(res.get("seconds", 0.0), 3))
            self.ran += 1
        else:
            server["up"], server["error"] = False, res["error"]
            server["next_probe"] = time.monotonic() + self.probe_every
            self.retry(row, server, res["error"])

    def dispatch(self, now: float) -> None:
        for s in self.pool:
            if s["up"] and s["busy"] is None and self.todo:
                row = self.pick(s)
                if row is not None:
                    self.todo.remove(row)
                    ref = s["actor"].run_row.remote(str(row.number), row.prompt, row.images,
                                                    {h: self.refs[h] for h in set(row.images.values())},
                                                    self.row_timeout)
                    s["busy"] = ref
                    self.inflight[ref] = (row, s, now + self.guard)
                    self.by_number[row.number].update(status="running", server=s["url"])
            if not s["up"] and s["probe"] is None and s["busy"] is None and now >= s["next_probe"]:
                s["probe"] = s["actor"].ping.remote()

    def step(self) -> bool:
        """One turn of the loop; False when there is nothing left to do."""
        ray = self.ray
        if not self.todo and not self.inflight:
            return False
        now = time.monotonic()
        self.dispatch(now)
        if not any(s["up"] for s in self.pool) and not self.inflight:
            self.all_down_since = self.all_down_since or now
            if now - self.all_down_since > self.give_up_after:
                reason = "; ".join(f"{s['url']}: {s['error']}" for s in self.pool)
                for row in self.todo:
                    self.finish(row, "not_run", error=f"no server answered for {self.give_up_after:g} s ({reason})")
                self.todo.clear()
                return False
        else:
            self.all_down_since = None
        waiting = list(self.inflight) + [s[k] for s in self.pool for k in ("probe", "stale") if s.get(k) is not None]
        ready = set(ray.wait(waiting, num_returns=1, timeout=0.25)[0]) if waiting else set()
        if not waiting:
            time.sleep(0.25)
        for s in self.pool:
            if s["probe"] is not None and s["probe"] in ready:
                ref, s["probe"] = s["probe"], None
                try:
                    s["up"] = bool(ray.get(ref))
                except Exception as e:  # noqa: BLE001 - any failure means "not up"
                    s["up"], s["error"] = False, _short(e)
                s["next_probe"] = time.monotonic() + self.probe_every
            if s.get("stale") is not None and s["stale"] in ready:  # a hung call came back at last: ignore it
                s["busy"] = s["stale"] = None
        for ref in [r for r in ready if r in self.inflight]:
            row, s, _ = self.inflight.pop(ref)
            s["busy"] = None
            try:
                res = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - the actor died (RayActorError) or its task raised
                res = {"status": "transport", "error": f"Ray: {_short(e)}"}
            self.settle(row, s, res)
        now = time.monotonic()
        for ref, (row, s, deadline) in list(self.inflight.items()):
            if now > deadline:  # hung beyond its own timeouts: the row goes to another server
                del self.inflight[ref]
                s["actor"].stop.remote(str(row.number))
                s["up"], s["error"], s["stale"] = False, f"row {row.id} got no answer in {self.guard:g} s", ref
                self.retry(row, s, f"no answer within {self.guard:g} s")
        self.save()
        return True

    def save(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last_write > 1.0:
            write_results(self.results_path, self.records)
            self.last_write = time.monotonic()
        self.bar.update(self.records, self.ran)

    def stop(self, wait: float = 10.0) -> None:
        """Ctrl-C: interrupt our running prompts, keep rows that finish meanwhile, mark the rest not run."""
        ray = self.ray
        stops = [s["actor"].stop.remote(str(row.number)) for row, s, _ in self.inflight.values()]
        if stops:
            ray.wait(stops, num_returns=len(stops), timeout=wait)
            ready, _ = ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=wait)
            for ref in ready:
                row, s, _ = self.inflight.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as e:  # noqa: BLE001
                    res = {"status": "transport", "error": _short(e)}
                if res["status"] == "ok" and res["files"] and not res.get("refused"):
                    self.settle(row, s, res)
                else:
                    self.tried[row.number].append((s["url"], "interrupted"))
                    self.finish(row, "not_run", server=s["url"], error="interrupted (Ctrl-C): its prompt was "
                                                                        "stopped on the server; no output kept")
        for row, s, _ in self.inflight.values():
            self.tried[row.number].append((s["url"], "interrupted"))
            self.finish(row, "not_run", server=s["url"], error="interrupted (Ctrl-C) while running; no output kept")
        self.inflight.clear()
        for row in self.todo:
            self.finish(row, "not_run", error="not run: the batch was interrupted (Ctrl-C) first")
        self.todo.clear()


def run_batch(workflow, manifest, servers, out_dir, *, inputs=None, sets=(), results=None, ray_address=None,
              retries: int = 2, row_timeout: float = 600.0, request_timeout: float = 60.0,
              reconnect_for: float = 15.0, give_up_after: float = 120.0, probe_every: float = 2.0,
              client_options: dict | None = None, progress="stderr", num_cpus: int = 1) -> BatchReport:
    """Run every row of ``manifest`` through ``workflow`` on the ComfyUI ``servers``; see the module docstring."""
    ray = _need_ray()
    progress = sys.stderr if progress == "stderr" else progress
    t_start = time.monotonic()
    servers = list(dict.fromkeys(s.rstrip("/") for s in servers))
    if not servers:
        raise BatchError("no server: name at least one ComfyUI server (--server http://HOST:8188)")
    for url in servers:
        comfy_client.Client(url)  # a bad URL fails here, with the client's message
    out = pathlib.Path(out_dir)
    results_path = pathlib.Path(results) if results else out / "results.jsonl"
    manifest = pathlib.Path(manifest)
    inputs_dir = pathlib.Path(inputs) if inputs else manifest.resolve().parent
    rows = read_manifest(manifest)
    sets = parse_sets(sets)
    try:
        wf_json = json.loads(pathlib.Path(workflow).read_text())
    except (OSError, ValueError) as e:
        raise BatchError(f"cannot read the workflow {workflow}: {e}") from None
    if not isinstance(wf_json, dict):
        raise BatchError(f"workflow {workflow} is neither a UI workflow nor an API prompt")
    options = {"request_timeout": request_timeout, "reconnect_for": reconnect_for, **(client_options or {})}

    started = _init_ray(ray, ray_address, num_cpus)
    for module in (comfy_client, sys.modules.get(__name__)):
        if module is not None and module.__name__ != "__main__":
            ray.cloudpickle.register_pickle_by_value(module)  # workers need not have tools/ on their path
    actor_cls = ray.remote(num_cpus=0, max_restarts=3, max_task_retries=0, max_concurrency=4)(ServerWorker)
    pool = [{"url": u, "actor": actor_cls.options(**_placement(ray, u)).remote(u, options), "up": False,
             "busy": None, "probe": None, "stale": None, "next_probe": 0.0, "error": "not probed yet"}
            for u in servers]
    records: list[dict] = []
    sched = None
    interrupted = False
    uploads: dict = {}
    try:
        probes = {s["actor"].ping.remote(): s for s in pool}
        ready, _ = ray.wait(list(probes), num_returns=len(probes), timeout=30)
        for ref in ready:
            try:
                probes[ref]["up"] = bool(ray.get(ref))
            except Exception as e:  # noqa: BLE001 - any failure means "not up"
                probes[ref]["error"] = _short(e)
        live = [s for s in pool if s["up"]]
        info = None
        for s in live:  # the first live server's node list (a UI workflow needs it; rows are checked against it)
            try:
                info = ray.get(s["actor"].object_info.remote(), timeout=120)
                break
            except Exception as e:  # noqa: BLE001 - try the next server
                s["error"] = f"GET /object_info failed: {_short(e)}"
        if comfy_client.is_ui(wf_json):
            if info is None:
                raise BatchError("the workflow is in UI format, which needs a server's /object_info to convert, and "
                                 "no server answered: " + "; ".join(f"{s['url']}: {s['error']}" for s in pool))
            try:
                api = comfy_client.ui_to_api(wf_json, info)
            except comfy_client.WorkflowError as e:
                raise BatchError(f"workflow {workflow}: {e}") from None
            titles = {str(n["id"]): n.get("title") for n in wf_json.get("nodes", []) if n.get("title")}
        else:
            api, titles = wf_json, {}
        if not all(isinstance(n, dict) and "class_type" in n for n in api.values()):
            raise BatchError(f"workflow {workflow} is neither a UI workflow nor an API prompt")
        wf = Workflow(api, info, inputs_dir, titles)
        if sets:  # a bad --set is a bad command, not a bad row
            probe = Row(0, "--set", {})
            wf.resolve(probe, sets)
            if probe.error:
                raise BatchError(probe.error.replace("row 0 (--set), ", ""))

        todo = collections.deque()
        for row in rows:
            wf.resolve(row, sets)
            if row.error:
                records.append(_record(row, "invalid"))
                continue
            marker = done_record(out, row)
            if marker is not None:
                records.append(_record(row, "skipped", server=marker.get("server"), seconds=0.0,
                                       outputs=[f"{row.id}/{f['path']}" for f in marker["files"]]))
                continue
            records.append(_record(row, "pending"))
            todo.append(row)
        needed = {h for r in todo for h in r.images.values()}
        refs = {h: [p.name, [ray.put(p.read_bytes())]] for h, p in wf.files.items() if h in needed}
        guard = row_timeout + 2 * request_timeout + 2 * reconnect_for + 30
        sched = _Scheduler(ray, pool, todo, records, refs, out, results_path, retries=retries,
                           row_timeout=row_timeout, guard=guard, give_up_after=give_up_after,
                           probe_every=probe_every, bar=Progress(len(rows), progress))
        sched.save(force=True)
        while sched.step():
            pass
    except KeyboardInterrupt:
        interrupted = True
        if sched is not None:
            sched.stop()
        else:  # stopped before any row was sent
            records[:] = [_record(r, "not_run", error="not run: the batch was interrupted (Ctrl-C) before it "
                                                      "started") for r in rows]
    finally:
        try:
            if records:
                write_results(results_path, records)
            for s in pool:
                try:
                    uploads[s["url"]] = ray.get(s["actor"].stats.remote(), timeout=5)["uploads"]
                except Exception:  # noqa: BLE001 - a dead actor has no stats
                    pass
                ray.kill(s["actor"])
        finally:
            if started:
                ray.shutdown()
    report = BatchReport(records, results_path, time.monotonic() - t_start, interrupted, uploads)
    if progress is not None:
        if sched is not None:
            sched.bar.update(records, sched.ran, final=True)
        progress.write(report.summary() + "\n")
        progress.flush()
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workflow", help="the workflow: UI JSON (saved from ComfyUI's menu) or API JSON")
    ap.add_argument("manifest", help="the edits: CSV (a header line of columns) or JSON Lines (.jsonl)")
    ap.add_argument("--server", action="append", default=[], metavar="URL",
                    help="a ComfyUI server, http://HOST:PORT or https://HOST:PORT; repeat for more "
                         "(default $COMFYUI_URL or http://127.0.0.1:8188)")
    ap.add_argument("--out", default="batch_outputs", help="folder for the outputs, one subfolder a row")
    ap.add_argument("--results", help="the result manifest, .jsonl or .csv (default OUT/results.jsonl)")
    ap.add_argument("--inputs", help="folder that file columns are relative to (default: the manifest's folder)")
    ap.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                    help="a value for every row (a row's own column wins)")
    ap.add_argument("--ray-address", help="an existing Ray cluster ('auto', ray://HOST:10001); default $RAY_ADDRESS, "
                                          "else a local Ray is started")
    ap.add_argument("--retries", type=int, default=2, help="retries of a row on another server after its server "
                                                           "died or timed out (default 2)")
    ap.add_argument("--row-timeout", type=float, default=600, help="seconds one row may run (default 600)")
    ap.add_argument("--request-timeout", type=float, default=60, help="seconds one HTTP request may take")
    ap.add_argument("--reconnect-for", type=float, default=15,
                    help="seconds a lost connection is retried before the row goes to another server (default 15)")
    ap.add_argument("--give-up-after", type=float, default=120,
                    help="seconds with no live server before the rows left are marked not_run (default 120)")
    ap.add_argument("--insecure", action="store_true", help="https: do not verify the servers' TLS certificates")
    ap.add_argument("--cafile", help="https: trust the CA certificate(s) in this PEM file")
    args = ap.parse_args(argv)
    servers = args.server or [os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188")]
    extra = {"insecure": True} if args.insecure else ({"cafile": args.cafile} if args.cafile else {})
    try:
        report = run_batch(args.workflow, args.manifest, servers, args.out, inputs=args.inputs, sets=args.set,
                           results=args.results, ray_address=args.ray_address, retries=args.retries,
                           row_timeout=args.row_timeout, request_timeout=args.request_timeout,
                           reconnect_for=args.reconnect_for, give_up_after=args.give_up_after,
                           client_options=extra)
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (BatchError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if report.interrupted:
        return 130
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
