"""Caption pools for R-precision (specs/pureclipnerf.md §5.1; the Dream Fields protocol).

* ``"oc_coco"``: ``data/oc_coco_val_153.txt``, the 153 Object-Centric COCO captions of Dream Fields,
  copied byte for byte from ``shared/data/oc_coco_val_153.txt`` (source and licences in
  ``data/NOTICE.md``), normalised at load time as the source does: ``q.lower().strip(' .,') + '.'``.
* ``"shapeworld"``: :func:`shapeworld.captions.all_captions` (``a {colour} {shape}``, 66 captions).
* any other value: a path to a UTF-8 text file with one caption per line.

File rules (errors name the line and the fix): one caption per line, a single final newline allowed;
**blank or whitespace-only lines are errors** (silently skipping one would shift every caption index
of a sweep); captions that coincide after normalisation are errors (R-precision needs distinct captions).
The checks live in :mod:`common.captions` (shared with Dream Fields).
"""

from pathlib import Path
from typing import List, Tuple, Union

from common.captions import CaptionFileError, check_captions, pool_with_prompt, read_caption_lines

__all__ = ["CaptionFileError", "OC_COCO_FILE", "load_captions", "caption_pool"]

DATA_DIR = Path(__file__).parent / "data"
OC_COCO_FILE = DATA_DIR / "oc_coco_val_153.txt"


def load_captions(source: Union[str, Path] = "oc_coco", normalize: bool = True) -> List[str]:
    """Read a caption pool (see the module docstring for ``source``).

    Args:
        source: ``"oc_coco"``, ``"shapeworld"`` or a file path.
        normalize: apply the OC-COCO normalisation; without it surrounding whitespace is stripped.

    Raises:
        CaptionFileError: missing or empty file, blank lines, duplicates.
    """
    if str(source) == "shapeworld":
        from shapeworld.captions import all_captions

        lines, path = all_captions(), Path("shapeworld.captions.all_captions()")
    else:
        path = OC_COCO_FILE if str(source) == "oc_coco" else Path(source)
        lines = read_caption_lines(path, "set `captions:` to 'oc_coco', 'shapeworld' or a text file with one "
                                         "caption per line.")
    return check_captions(lines, path, normalize)


def caption_pool(source: Union[str, Path], normalize: bool, prompt: str) -> Tuple[List[str], int]:
    """The pool of ``source`` and the index of ``prompt`` in it; a prompt not in the pool is appended
    (Dream Fields' reference implementation)."""
    return pool_with_prompt(load_captions(source, normalize), normalize, prompt)
