"""The on-disk cache of generated shapeworld data (renders, voxels, scene folders).

Location: the ``cache_dir`` argument of a datamodule, else ``$PRIORLAB_CACHE/shapeworld``, else
``~/.cache/priorlab/shapeworld``. Every artefact is named by a hash of everything that determines its
content (generator version, seed, sizes, camera ranges, ...), so changing any setting regenerates it
and nothing stale is ever read. Files are written to a temporary name and renamed (atomic).
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from common.io import atomic_path

#: bump when the generators change in a way that changes their output
GENERATOR_VERSION = 1


def cache_root(cache_dir: Optional[str] = None) -> Path:
    """The shapeworld cache folder."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PRIORLAB_CACHE")
    if env:
        return Path(env).expanduser() / "shapeworld"
    return Path("~/.cache/priorlab/shapeworld").expanduser()


def cache_key(kind: str, **settings: Any) -> str:
    """``<kind>-<12 hex digits>`` from the JSON of ``settings`` and :data:`GENERATOR_VERSION`."""
    blob = json.dumps({"version": GENERATOR_VERSION, **settings}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def cached_tensors(path: Path, build: Callable[[], dict]) -> dict:
    """Load the dict of tensors at ``path``, or ``build()`` it, save it atomically and return it."""
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    data = build()
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return data
