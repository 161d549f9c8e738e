"""Caption pools for R-precision (specs/pureclipnerf.md §5.1; the Dream Fields protocol).

* ``"oc_coco"``: ``data/oc_coco_val_153.txt``, the 153 Object-Centric COCO captions of Dream Fields,
  copied byte for byte from ``shared/data/oc_coco_val_153.txt`` (source and licences in
  ``data/NOTICE.md``), normalised at load time as the source does: ``q.lower().strip(' .,') + '.'``.
* ``"shapeworld"``: :func:`shapeworld.captions.all_captions` (``a {colour} {shape}``, 66 captions).
* any other value: a path to a UTF-8 text file with one caption per line.

File rules (errors name the line and the fix): one caption per line, a single final newline allowed;
**blank or whitespace-only lines are errors** (silently skipping one would shift every caption index
of a sweep); captions that coincide after normalisation are errors (R-precision needs distinct captions).
"""

from pathlib import Path
from typing import List, Tuple, Union

from common.metrics import normalize_caption

__all__ = ["CaptionFileError", "OC_COCO_FILE", "load_captions", "caption_pool"]

DATA_DIR = Path(__file__).parent / "data"
OC_COCO_FILE = DATA_DIR / "oc_coco_val_153.txt"


class CaptionFileError(ValueError):
    """A caption file that cannot be used; the message names the file, the line and the fix."""


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
        if not path.is_file():
            raise CaptionFileError(f"caption file {path} does not exist; set `captions:` to 'oc_coco', 'shapeworld' or "
                                   "a text file with one caption per line.")
        lines = path.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines = lines[:-1]  # the final newline
    if not lines:
        raise CaptionFileError(f"caption file {path} is empty: write one caption per line.")
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if blank:
        raise CaptionFileError(f"caption file {path} has blank line(s) at line {', '.join(map(str, blank[:10]))}"
                               f"{' ...' if len(blank) > 10 else ''}: write one caption per line with no blank lines "
                               "(only a single final newline is allowed), so that caption indices stay stable.")
    captions = [normalize_caption(line) if normalize else line.strip() for line in lines]
    seen: dict = {}
    for i, c in enumerate(captions):
        if c in seen:
            raise CaptionFileError(f"caption file {path}: line {i + 1} repeats line {seen[c] + 1} ({c!r}"
                                   f"{' after normalisation' if normalize else ''}); R-precision needs distinct captions.")
        seen[c] = i
    return captions


def caption_pool(source: Union[str, Path], normalize: bool, prompt: str) -> Tuple[List[str], int]:
    """The pool of ``source`` and the index of ``prompt`` in it; a prompt not in the pool is appended
    (Dream Fields' reference implementation)."""
    pool = load_captions(source, normalize)
    key = normalize_caption(prompt) if normalize else prompt.strip()
    if key not in pool:
        pool.append(key)
    return pool, pool.index(key)
