"""Running the atheris targets: from the kept corpus in the tests, and as libFuzzer re-runs them.

A target is a module run from the checkout's root (``python -m tests.fuzz.atheris_envelope``).
libFuzzer's ``-merge=1`` runs its own command line again through the shell, from ``argv[0]``; a
module has no such path, so `fuzzer_argv` makes argv[0] the command that starts it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).with_name("corpus")
MAX_LEN = 8192


def fuzzer_argv(module: str) -> list[str]:
    """sys.argv for atheris.Setup, with argv[0] a shell command that runs this module again."""
    return [f"{sys.executable} -m {module}", *sys.argv[1:]]


def short_run(target: str, tmp: Path, runs: int, seed: int = 15) -> str:
    """`runs` executions of tests.fuzz.<target> from a copy of its kept corpus (the checkout is not
    written), with a fixed seed; its libFuzzer log. A crash fails with the end of that log."""
    corpus = tmp / "corpus"
    shutil.copytree(CORPUS / target.removeprefix("atheris_"), corpus)
    (tmp / "tmp").mkdir()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            f"tests.fuzz.{target}",
            str(corpus),
            f"-runs={runs}",
            f"-seed={seed}",
            f"-max_len={MAX_LEN}",
            f"-artifact_prefix={tmp}/",  # a crashing input is written there, not into the checkout
        ],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp / "tmp")},  # the target's own files, removed with tmp
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-6000:]
    assert f"Done {runs} runs" in run.stderr, run.stderr[-2000:]
    return run.stderr
