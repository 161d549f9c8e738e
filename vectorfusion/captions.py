"""The VectorFusion caption benchmark (128 captions) and caption-file loading (spec §4.1).

``data/vectorfusion_captions.txt`` is copied from ``shared/data/vectorfusion_captions.txt``: the
authors' ``svg_bench_prompts.txt`` (``vectorfusion/vectorfusion.github.io``; see ``data/NOTICE.md``).
Captions are used as written for CLIP evaluation (no suffix, no normalisation, spec §4.2).
"""

from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
BENCHMARK_FILE = DATA_DIR / "vectorfusion_captions.txt"
"""The 128 benchmark captions of thesis Table 6.1."""


class CaptionFileError(ValueError):
    """A caption file that cannot be used; the message names the file, the line and the fix."""


def load_captions(path: str | Path | None = None) -> list[str]:
    """Read one caption per line (surrounding whitespace stripped).

    Args:
        path: a UTF-8 text file (default: the 128-caption benchmark).

    Raises:
        CaptionFileError: missing or empty file, blank lines, or duplicates (R-precision needs a pool
            of distinct captions, and a skipped line would shift every caption index of a sweep).
    """
    path = Path(path) if path is not None else BENCHMARK_FILE
    if not path.is_file():
        raise CaptionFileError(f"caption file {path} does not exist; give a text file with one caption per line "
                               f"(default: {BENCHMARK_FILE})")
    lines = path.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    if not lines:
        raise CaptionFileError(f"caption file {path} is empty: write one caption per line")
    captions, seen = [], {}
    for i, line in enumerate(lines, 1):
        c = line.strip()
        if not c:
            raise CaptionFileError(f"{path}:{i} is blank: write one caption per line, no blank lines")
        if c in seen:
            raise CaptionFileError(f"{path}:{i} repeats line {seen[c]} ({c!r}); captions must be distinct")
        seen[c] = i
        captions.append(c)
    return captions
