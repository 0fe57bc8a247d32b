"""Layer assets in `.keras` archives (`assets/<object path>/...`, e.g. a lookup layer's
`vocabulary.txt`), through Keras 3's layer hooks: `save_assets(dir_path)` writes files into a
directory, `load_assets(dir_path)` reads them back. Object paths are those of the weights file
(weights_map.keras3_objects). Only layers defining the hooks take part.
"""
from __future__ import annotations

import os
import tempfile

from .atomic import scratch_dir
from .keras_zip import ASSETS_PREFIX, read_keras_zip_asset
from .weights_map import keras3_objects


def collect_assets(model, destination):
    """{member name: bytes} from every layer's save_assets, written to a scratch folder beside the
    archive `destination` being saved."""
    out = {}
    for path, obj in keras3_objects(model):
        if not callable(getattr(obj, "save_assets", None)):
            continue
        with scratch_dir(destination) as tmp:
            obj.save_assets(tmp)
            for root, _, files in os.walk(tmp):
                for name in sorted(files):
                    rel = os.path.relpath(os.path.join(root, name), tmp).replace(os.sep, "/")
                    with open(os.path.join(root, name), "rb") as fh:
                        out[f"{ASSETS_PREFIX}{path + '/' if path else ''}{rel}"] = fh.read()
    return out


def restore_assets(model, archive_path, members):
    """Hand each layer with load_assets the files stored under its path (sub-objects' own
    folders excluded), written to a temporary directory."""
    members = [m for m in members if m.startswith(ASSETS_PREFIX) and not m.endswith("/")]
    if not members:
        return
    objects = keras3_objects(model)
    paths = {path for path, _ in objects}
    for path, obj in objects:
        if not callable(getattr(obj, "load_assets", None)):
            continue
        prefix = f"{ASSETS_PREFIX}{path + '/' if path else ''}"
        mine = [m for m in members if m.startswith(prefix) and not _owned_deeper(m, prefix, path, paths)]
        with tempfile.TemporaryDirectory() as tmp:
            for member in mine:
                target = os.path.join(tmp, *member[len(prefix):].split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as fh:
                    fh.write(read_keras_zip_asset(archive_path, member))
            obj.load_assets(tmp)


def _owned_deeper(member, prefix, path, paths):
    """True when `member` sits in the folder of a sub-object of `path` (e.g. its cell)."""
    rest = member[len(prefix):].split("/")[:-1]
    for i in range(1, len(rest) + 1):
        if (f"{path}/" if path else "") + "/".join(rest[:i]) in paths:
            return True
    return False
