"""Hybrid scoring of memories: embeddings (wordllama), BM25 (bm25s) and a recency bonus.

    score = W_EMBEDDING * max(0, cos(q, m)) + W_KEYWORD * b / (b + KW_HALF) + W_RECENCY * 2 ** (-age / HALF_LIFE)

* ``cos``: cosine of wordllama's 256-dimension embeddings of the question and the memory (the model
  ships in the wheel; loaded from the package folder with downloads disabled).
* ``b``: the BM25 score (bm25s, English stop words, k1 1.5, b 0.75) of the memory for the question;
  ``b / (b + KW_HALF)`` maps it onto 0..1 the same way on every cell (no per-cell max to divide by,
  so scores from different holders compare when the entry cell merges them).
* ``age``: now minus the memory's time (ms); a memory `HALF_LIFE_MS` old gets half the bonus.

Scores travel as integers in millionths (`SCALE`): canonical JSON has no floats. The weights were
chosen on tests/vectors/memory_corpus.json's questions (docs/memory.md gives the figures).

numpy, bm25s and wordllama are imported when an index is first built or queried, never at import:
the cell host imports every cell's code before it forks, and these cost about 100 MiB.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

Mode = Literal["hybrid", "keyword", "embedding"]
MODES: tuple[Mode, ...] = ("hybrid", "keyword", "embedding")
W_EMBEDDING = 0.695
W_KEYWORD = 0.30
W_RECENCY = 0.005
KW_HALF = 8.0
HALF_LIFE_MS = 30 * 86_400_000
SCALE = 1_000_000
DIM = 256


@dataclass(frozen=True, slots=True)
class Scored:
    """One memory's score and its parts, each in millionths."""

    id: str
    score: int
    embedding: int
    keyword: int
    recency: int

    def parts(self) -> dict[str, int]:
        return {"emb": self.embedding, "kw": self.keyword, "rec": self.recency}


def available() -> bool:
    """Whether this installation can search (the ``ai`` extra: wordllama and bm25s; on the image, from
    the stick's AI stack, borgusb.aisite). Looked up without importing them, and not cached: the cell
    host asks before the stick is mounted, and the cells it forks inherit what it knows."""
    return all(importlib.util.find_spec(name) is not None for name in ("wordllama", "bm25s", "numpy"))


@lru_cache(maxsize=1)
def embedder() -> Any:
    """wordllama's model, loaded once per process from the wheel's own folder (never downloaded)."""
    _one_thread()
    import wordllama

    return wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True, dim=DIM)


def _one_thread() -> None:
    """tokenizers without its thread pool: its threads spin while they wait for work, and with five
    cells on two cores a search cost each cell 8-10 ms instead of 2 (bench_memory). Only takes
    effect before tokenizers is first imported."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def embed(texts: list[str]) -> Any:
    """Unit-length embeddings, one row per text (float32)."""
    _one_thread()
    import numpy as np

    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.asarray(embedder().embed(texts, norm=True), dtype=np.float32)


def _tokenize(texts: list[str]) -> Any:
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", show_progress=False, return_ids=False)


@dataclass(frozen=True, slots=True)
class Plan:
    """An index build's input, copied from the index (`Index.snapshot`)."""

    ids: list[str]
    texts: list[str]
    ts: list[int]
    old_emb: Any  # the last build's embeddings; rows `kept_rows` are reused, in order
    kept_rows: list[int]


@dataclass(frozen=True, slots=True)
class Built:
    ids: list[str]
    emb: Any
    ts: Any
    bm25: Any


def compute(plan: Plan) -> Built:
    """Embed the new texts and index every text for BM25; touches nothing but `plan` (a thread may run it)."""
    import bm25s
    import numpy as np

    n_kept = len(plan.kept_rows)
    parts = [plan.old_emb[plan.kept_rows]] if n_kept else []
    parts.append(embed(plan.texts[n_kept:]))
    emb = np.vstack(parts)
    tokens = _tokenize(plan.texts)
    bm25 = None
    if plan.ids and any(tokens):
        bm25 = bm25s.BM25()
        bm25.index(tokens, show_progress=False)
    return Built(plan.ids, emb, np.array(plan.ts, dtype=np.int64), bm25)


class Index:
    """The texts one holder (or one owner's side, for private memories) searches, by memory id.

    Adding and removing are cheap; the BM25 index and the embeddings of new texts are built at the
    next search (bm25s indexes a whole corpus at once), so puts never load the model."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[str, int]] = {}  # id -> (text, ts)
        self._ids: list[str] = []  # rows of the built index
        self._emb: Any = None
        self._ts: Any = None
        self._bm25: Any = None
        self._dirty = False

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, memory_id: object) -> bool:
        return memory_id in self._items

    def add(self, memory_id: str, text: str, ts: int) -> None:
        if memory_id not in self._items:
            self._items[memory_id] = (text, ts)
            self._dirty = True

    def remove(self, memory_id: str) -> None:
        if self._items.pop(memory_id, None) is not None:
            self._dirty = True

    def snapshot(self) -> Plan | None:
        """What a build needs, copied (None when the index is up to date): `compute` can then run in
        another thread while puts and removals go on; they mark the index out of date again."""
        if not self._dirty:
            return None
        old = {mid: row for row, mid in enumerate(self._ids)}
        kept = [mid for mid in self._ids if mid in self._items]
        new = [mid for mid in self._items if mid not in old]
        ids = kept + new
        self._dirty = False
        return Plan(
            ids=ids,
            texts=[self._items[mid][0] for mid in ids],
            ts=[self._items[mid][1] for mid in ids],
            old_emb=self._emb,
            kept_rows=[old[mid] for mid in kept],
        )

    def install(self, built: Built) -> None:
        """A computed build, in place of the last (ids removed meanwhile are skipped by `search`)."""
        self._ids, self._emb, self._ts, self._bm25 = built.ids, built.emb, built.ts, built.bm25

    def build(self) -> None:
        """Bring the index up to date here (embedding only the texts it has not embedded yet)."""
        plan = self.snapshot()
        if plan is not None:
            self.install(compute(plan))

    def search(
        self,
        text: str,
        now_ms: int,
        *,
        limit: int,
        min_score: int = 0,
        mode: Mode = "hybrid",
        accept: Callable[[str], bool] | None = None,
    ) -> list[Scored]:
        """The best `limit` accepted memories for `text`, best first, each at least `min_score` and above 0."""
        if not self._items or limit <= 0:
            return []
        self.build()
        import numpy as np

        n = len(self._ids)
        # einsum, not BLAS's matrix product: BLAS's worker threads spin while they wait, and five cells
        # on two cores then spent 24 ms of CPU each per search instead of 2 (bench_memory)
        cos = np.clip(np.einsum("ij,j->i", self._emb, embed([text])[0]), 0.0, 1.0) if mode != "keyword" else np.zeros(n)
        kw = np.zeros(n)
        if mode != "embedding" and self._bm25 is not None:
            query = [t for t in _tokenize([text])[0] if t in self._bm25.vocab_dict]
            if query:
                b = np.asarray(self._bm25.get_scores(query), dtype=np.float64)
                kw = b / (b + KW_HALF)
        age = np.maximum(0, now_ms - self._ts).astype(np.float64)
        rec = np.exp2(-age / HALF_LIFE_MS) if mode == "hybrid" else np.zeros(n)
        if mode == "hybrid":
            total = W_EMBEDDING * cos + W_KEYWORD * kw + W_RECENCY * rec
        else:
            total = cos if mode == "embedding" else kw
        found: list[Scored] = []
        for row in np.argsort(-total, kind="stable"):
            score = int(round(float(total[row]) * SCALE))
            if score <= 0 or score < min_score or len(found) >= limit:  # 0: nothing in common
                break
            mid = self._ids[row]
            if mid in self._items and (accept is None or accept(mid)):
                c, k, r = (int(round(float(x[row]) * SCALE)) for x in (cos, kw, rec))
                found.append(Scored(mid, score, c, k, r))
        return found
