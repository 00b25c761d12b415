"""Thin ComfyUI wrappers. Each module in this package lists its node classes in ``NODES``."""
import importlib
import logging
import pkgutil

CATEGORY = "PIXELS"


def all_nodes():
    """Every node class of the pack, module by module in name order (a module must define ``NODES``).

    A module that fails to import is logged with its error and skipped, so one broken method does not
    take the whole pack down; the host tests fail on any such log line.
    """
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception:
            logging.exception("PIXELS pack: IMPORT FAILED for nodes/%s.py; its nodes are unavailable", info.name)
            continue
        found.extend(getattr(module, "NODES", []))
    ids = [cls.define_schema().node_id for cls in found]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise RuntimeError(f"PIXELS pack: duplicate node ids {sorted(dupes)}")
    return found
