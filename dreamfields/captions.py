"""Caption sets for R-precision: the 153 Object-Centric COCO captions and the shapeworld captions.

``data/oc_coco_val_153.txt`` is copied byte for byte from ``shared/data/oc_coco_val_153.txt`` (the
``queries`` list of ``google-research/google-research`` ``dreamfields/dreamfields/config/coco_queries_val.py``,
Apache-2.0; COCO captions CC-BY-4.0; see ``data/NOTICE.md``). The source module normalises every
entry at import time with ``q.lower().strip(' .,') + '.'``; :func:`load_captions` applies the same
(:func:`common.metrics.normalize_caption`) when ``normalize=True``.

File rules (checked, with errors naming the line): UTF-8, one caption per line, a single final newline
allowed; blank or whitespace-only lines are **errors** (a silently skipped line would shift every
caption index of a sweep); duplicate captions after normalisation are errors (R-precision needs a
pool of distinct captions). The checks live in :mod:`common.captions` (shared with PureCLIPNeRF).
"""

from pathlib import Path
from typing import List, Optional, Union

from common.captions import CaptionFileError, check_captions, pool_with_prompt, read_caption_lines

__all__ = ["CaptionFileError", "OC_COCO_FILE", "SHAPEWORLD_FILE", "load_captions", "shapeworld_captions"]

DATA_DIR = Path(__file__).parent / "data"
#: the paper's caption set (thesis §4.5.1, §10.2)
OC_COCO_FILE = DATA_DIR / "oc_coco_val_153.txt"
#: the shapeworld evaluation captions (``shapeworld.captions.all_captions()``, one per kind × colour)
SHAPEWORLD_FILE = DATA_DIR / "shapeworld_eval_66.txt"


def load_captions(path: Union[str, Path, None] = None, normalize: bool = True) -> List[str]:
    """Read a caption file.

    Args:
        path: the file (default: the shipped OC-COCO list).
        normalize: apply the OC-COCO normalisation (lower case, strip spaces/dots/commas, append ".").
            Without it, surrounding whitespace is still stripped.

    Raises:
        CaptionFileError: missing or empty file, blank lines, or duplicate captions.
    """
    path = Path(path) if path is not None else OC_COCO_FILE
    lines = read_caption_lines(path, f"pass caption_file=<a text file with one caption per line> (default: the "
                                     f"shipped {OC_COCO_FILE.name}).")
    return check_captions(lines, path, normalize)


def shapeworld_captions() -> List[str]:
    """The shapeworld retrieval captions (from :mod:`shapeworld.captions`, ``a {colour} {shape}``)."""
    from shapeworld.captions import all_captions

    return all_captions()


def caption_pool(path: Optional[Union[str, Path]], normalize: bool, prompt: str) -> tuple[List[str], int]:
    """The R-precision pool of ``path`` and the index of ``prompt`` in it; a prompt that is not in the
    pool is appended (ref impl: "if the query is not in queries_r it is appended")."""
    return pool_with_prompt(load_captions(path, normalize), normalize, prompt)
