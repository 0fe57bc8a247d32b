"""Errors raised by the Keras file layer, and the size bounds every reader enforces.

Every failure to read a Keras file (HDF5, `.keras` zip, JSON/YAML config, sharded weights)
is reported as :class:`KerasFileError` (a ``ValueError``) whose message names the file and what
is wrong; refusals made for safety (zip bombs, absurd declared sizes, HDF5 links leaving the
file) use the subclass :class:`UnsafeFileError`. The module-level constants below are the
bounds every reader applies; readers look them up at call time, so a program can change them
here (e.g. ``kcompile.saving.errors.MAX_ARRAY_BYTES = 16 * 1024 ** 3``).
"""
from __future__ import annotations

import os

# Largest single array a reader materialises (bytes).
MAX_ARRAY_BYTES = 4 * 1024 ** 3
# A chunked/compressed HDF5 dataset may expand at most this many times its stored size
# (checked only above SMALL_ARRAY_BYTES; Keras 3 uses 100x/1000x thresholds too).
MAX_EXPANSION_RATIO = 1000
SMALL_ARRAY_BYTES = 16 * 1024 ** 2
# Largest JSON/YAML text parsed (bytes) and the deepest nesting / most nodes accepted.
MAX_TEXT_BYTES = 64 * 1024 ** 2
MAX_NESTING_DEPTH = 400
MAX_STRUCTURE_NODES = 5_000_000
# Most names in one `layer_names` / `weight_names` attribute and most objects in one file.
MAX_NAMES = 1_000_000
# ZIP archives: most members, largest member, largest total after extraction (bytes), and the
# largest compression ratio accepted for a member above SMALL_ZIP_MEMBER bytes (Keras stores
# members uncompressed, so a high ratio means a zip bomb).
MAX_ZIP_MEMBERS = 100_000
MAX_ZIP_RATIO = 100
SMALL_ZIP_MEMBER = 1024 ** 2
MAX_ZIP_MEMBER_BYTES = 16 * 1024 ** 3
MAX_ZIP_TOTAL_BYTES = 32 * 1024 ** 3
# A weights file inside a `.keras` archive is extracted to memory up to this size, else to a
# temporary file.
MAX_IN_MEMORY_WEIGHTS = 256 * 1024 ** 2


class KerasFileError(ValueError):
    """A Keras file could not be read (or written): the message names the file and the problem.

    Attributes: ``path`` (str or None) and ``reason`` (the message without the path).
    """

    def __init__(self, reason: str, path=None):
        self.reason = str(reason)
        self.path = None if path is None else _path_text(path)
        if self.path is None:
            text = self.reason
        else:
            text = f"{self.path}: {self.reason}"
        super().__init__(text)


class UnsafeFileError(KerasFileError):
    """A file was refused for safety: an absurd declared size, a zip bomb, an unsafe member
    name or an HDF5 link leaving the file."""


def _path_text(path) -> str:
    if isinstance(path, (str, bytes, os.PathLike)):
        try:
            return os.fsdecode(path)
        except (TypeError, ValueError):
            return repr(path)
    name = getattr(path, "name", None)
    if isinstance(name, str):
        return name
    return f"<{type(path).__name__}>"
