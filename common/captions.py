"""Caption pools for CLIP R-precision: reading and checking caption files, placing the prompt in the pool.

Shared by :mod:`dreamfields.captions` and :mod:`pureclipnerf.captions`, which keep their own data files
(the 153 Object-Centric COCO captions of Dream Fields, thesis §4.5.1, §10.2, with their attribution in
each package's ``data/NOTICE.md``) and decide which source a config names.

File rules (checked, with errors naming the line): UTF-8, one caption per line, a single final newline
allowed; blank or whitespace-only lines are **errors** (a silently skipped line would shift every
caption index of a sweep); duplicate captions after normalisation are errors (R-precision needs a
pool of distinct captions). Normalisation is the OC-COCO one of the Dream Fields source,
``q.lower().strip(' .,') + '.'`` (:func:`common.metrics.normalize_caption`).
"""

from pathlib import Path
from typing import List, Sequence, Tuple, Union

from common.metrics import normalize_caption

__all__ = ["CaptionFileError", "read_caption_lines", "check_captions", "pool_with_prompt"]


class CaptionFileError(ValueError):
    """A caption file that cannot be used; the message names the file, the line and the fix."""


def read_caption_lines(path: Path, missing_hint: str) -> List[str]:
    """The lines of caption file ``path`` without the final newline (``\\r\\n`` read as ``\\n``).

    Raises:
        CaptionFileError: ``path`` does not exist (the message ends with ``missing_hint``).
    """
    if not path.is_file():
        raise CaptionFileError(f"caption file {path} does not exist; {missing_hint}")
    lines = path.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]  # the final newline
    return lines


def check_captions(lines: Sequence[str], path: Union[str, Path], normalize: bool = True) -> List[str]:
    """The captions of ``lines`` (read from ``path``, named in errors), normalised or only stripped.

    Raises:
        CaptionFileError: no lines, blank lines, or duplicate captions.
    """
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


def pool_with_prompt(pool: List[str], normalize: bool, prompt: str) -> Tuple[List[str], int]:
    """``(pool, index of prompt)``; a prompt that is not in the pool is appended (Dream Fields' reference
    implementation: "if the query is not in queries_r it is appended")."""
    key = normalize_caption(prompt) if normalize else prompt.strip()
    if key not in pool:
        pool.append(key)
    return pool, pool.index(key)
