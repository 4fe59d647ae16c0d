"""Image build contexts: the files of container/<image>/, the content-hash tag that names them, and their zip.

The tag is the only link between a reviewed build context and the image an instance runs: the generator writes it
into the instance templates, `deploy.py images` uploads the context under it, and the CodeBuild project recomputes it
from the unzipped files before it builds (generator/stacks/central.py). All three must agree, so the rule is one a
shell can repeat: sha256 over the lines `sha256sum` prints for every file, sorted by path in byte order.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Mapping
from pathlib import Path

# The committed build contexts, container/<image>/ in the repository.
CONTAINER = Path(__file__).resolve().parent.parent / "container"
TAG_PREFIX = "ctx-"
TAG_HEX_DIGITS = 20
# Zip entries carry a timestamp; a fixed one keeps the archive a function of the files alone.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
SKIPPED_NAMES = frozenset({"__pycache__", ".DS_Store"})


def read_context(directory: Path) -> dict[str, bytes]:
    """Relative POSIX path -> bytes of every file under `directory` (editor and Python droppings left out)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"build context {directory}/ does not exist")
    files = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if path.is_file() and not SKIPPED_NAMES.intersection(relative.parts):
            files[relative.as_posix()] = path.read_bytes()
    return files


def manifest(files: Mapping[str, bytes]) -> str:
    """Exactly what `find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum` prints."""
    paths = sorted(files, key=lambda path: path.encode("utf-8"))
    return "".join(f"{hashlib.sha256(files[path]).hexdigest()}  {path}\n" for path in paths)


def context_tag(files: Mapping[str, bytes]) -> str:
    """The immutable image tag for a build context: a changed, added or removed file gives a new tag."""
    if not files:
        raise ValueError("an empty build context has no image")
    digest = hashlib.sha256(manifest(files).encode("utf-8")).hexdigest()
    return TAG_PREFIX + digest[:TAG_HEX_DIGITS]


def zip_context(files: Mapping[str, bytes], executables: frozenset[str] = frozenset()) -> bytes:
    """A reproducible zip of the context; paths in `executables` keep their execute bits."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            entry = zipfile.ZipInfo(path, date_time=ZIP_EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if path in executables else 0o644
            entry.external_attr = (0o100000 | mode) << 16
            archive.writestr(entry, files[path])
    return buffer.getvalue()
