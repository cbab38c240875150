"""The AI stack kept outside the installed packages (the USB image's ai.squashfs on the stick).

The image's RAM root leaves out llama-cpp-python, the agents' model and the memory search libraries;
they live in a read-only squashfs on the stick, mounted at boot (borgusb.image.aimount). The units of
the cells that use them (brain, memory) name its site directory in ``BORGUSB_AI_SITE``; a cell is
forked from the cell host, whose import path was fixed before, so the cell adds that directory
itself when it starts. Appended, not prepended: a package the image also has comes from the image.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import site
import sys
from collections.abc import Mapping
from pathlib import Path

ENV = "BORGUSB_AI_SITE"
# In the site directory: C++ runtime libraries the RAM root leaves out (image/ai_stack.py), loaded
# globally before numpy or llama_cpp is imported, so that their extension modules' needs are met
# (a process's library search path cannot change once it runs; a forked cell's is the host's).
SYSLIBS_IN_SITE = "borgusb-syslibs"


def use_ai_site(environ: Mapping[str, str] = os.environ) -> str | None:
    """Append ``BORGUSB_AI_SITE`` (and its .pth files) to the import path if it is a directory; the
    directory, or None when there is none (unset, or the stick holds no AI stack)."""
    path = environ.get(ENV, "")
    if not path or not os.path.isdir(path):
        return None
    if path not in sys.path:
        for lib in sorted(Path(path, SYSLIBS_IN_SITE).glob("*.so*")):
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        site.addsitedir(path)
        importlib.invalidate_caches()
    return path
