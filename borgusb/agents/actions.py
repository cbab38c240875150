"""What an agent may do: one JSON object per step, checked against a schema before anything runs.

The model writes text; this module is the only way from that text to an `Action`. Each action is
a msgspec Struct tagged by its ``"action"`` field, with bounds on every string, list and number,
so a decoded action is already a well-formed request: the executor never sees a malformed one.
The same types give the JSON schema handed to the model (``response_format``), so the grammar
that constrains the model and the check that follows it cannot drift apart. A step may allow only
some actions (`schema_for`): the session's agenda narrows the model's choice, never the check.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import msgspec

MAX_ACTION_BYTES = 8 * 1024
MAX_TOKENS = 512  # the most completion tokens a brain gives one action
CHARS_PER_TOKEN = 3  # English runs about 4 characters a token in SmolLM2's vocabulary: a margin
TAG_TOKENS, FIELD_TOKENS, UNCAPPED_CHARS, MIN_TOKENS = 12, 6, 32, 64
GRAMMAR_MAX_CHARS = 600  # longer texts are bounded by the check and the token budget only
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=600)]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
MemoryId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$", max_length=64)]
SPECIALTIES = ("networking", "storage", "economics", "monitoring", "security", "mail", "files", "time")
Specialty = Literal["networking", "storage", "economics", "monitoring", "security", "mail", "files", "time"]


class _Action(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="action"):
    pass


class MessageAgent(_Action, tag="message_agent", frozen=True):
    """Send a signed message to another agent, by its name."""

    to: Short
    text: Text


class ReplyPerson(_Action, tag="reply_person", frozen=True):
    """Answer the person who asked (shown in the conduit's chat, with the agent's name)."""

    text: Text


class PutMemory(_Action, tag="put_memory", frozen=True):
    """Keep a finding on the network as a signed memory."""

    text: Text
    kind: Annotated[str, msgspec.Meta(pattern="^[a-z][a-z_]{0,23}$")] = "finding"  # memory.record.KIND takes it
    public: bool = True


class SearchMemories(_Action, tag="search_memories", frozen=True):
    """Ask every memory cell a natural-language question."""

    query: Short
    limit: Literal[1, 2, 3, 4, 5, 6, 7, 8, 9, 10] = 5  # an enum: the grammar cannot bound an integer


class GetMemories(_Action, tag="get_memories", frozen=True):
    """Fetch memories by id."""

    ids: Annotated[list[MemoryId], msgspec.Meta(min_length=1, max_length=10)]


class RankItem(_Action, tag="rank_item", frozen=True):
    """Give an item of the working memory a new rank (1 = drop first, 1000 = keep longest)."""

    item: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    rank: Annotated[int, msgspec.Meta(ge=1, le=1000)]


class PruneItems(_Action, tag="prune_items", frozen=True):
    """Drop every working-memory item ranked below a bound."""

    below: Annotated[int, msgspec.Meta(ge=1, le=1000)]


class ReadSource(_Action, tag="read_source", frozen=True):
    """Read lines of BorgUSB's own code: a module (borgusb.ledger.tx), or "" for the next in dependency order."""

    module: Annotated[str, msgspec.Meta(pattern="^(borgusb([.][a-z_][a-z0-9_]*){0,5})?$")] = ""
    start: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1
    count: Annotated[int, msgspec.Meta(ge=1, le=80)] = 40


class ChooseSpecialty(_Action, tag="choose_specialty", frozen=True):
    """Take a specialty: the chat sends questions of that kind to this agent first."""

    specialty: Specialty


class ProposePrompt(_Action, tag="propose_prompt", frozen=True):
    """Write a new version of this agent's own prompt (signed; the previous one can be restored)."""

    text: Annotated[str, msgspec.Meta(min_length=20, max_length=4000)]


class EndSession(_Action, tag="end_session", frozen=True):
    """Stop thinking for now, with a one-line summary of the session."""

    summary: Short


ACTIONS: dict[str, type[_Action]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (
        MessageAgent,
        ReplyPerson,
        PutMemory,
        SearchMemories,
        GetMemories,
        RankItem,
        PruneItems,
        ReadSource,
        ChooseSpecialty,
        ProposePrompt,
        EndSession,
    )
}


class ActionError(ValueError):
    """The model's output is not an allowed action; ``reason`` is one word, the text says why."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


def _union(allowed: tuple[str, ...]) -> Any:
    unknown = set(allowed) - set(ACTIONS)
    if not allowed or unknown:
        raise ValueError(f"unknown actions: {sorted(unknown) or 'none allowed'}")
    types = tuple(ACTIONS[name] for name in allowed)
    return types[0] if len(types) == 1 else Union[types]  # noqa: UP007


def _loosen(node: Any) -> Any:
    """The schema as the model's grammar: string lengths are kept up to `GRAMMAR_MAX_CHARS` (the
    grammar then stops a text at its cap: SmolLM2 wrote 270-character summaries for a 200 cap, every
    retry the same), dropped above (a grammar unrolls ``maxLength`` into that many nested rules:
    llama-cpp-python 0.3.36 crashed on 4000). Measured with 0.3.36 on 2 cores: a 600 cap costs no
    sampling speed (42.9 against 43.5 tokens/s for a 496-character text). `parse_action` still
    checks the full bounds on what comes back."""
    if isinstance(node, dict):
        drop = ("maxLength", "minLength") if node.get("maxLength", 0) > GRAMMAR_MAX_CHARS else ()
        return {k: _loosen(v) for k, v in node.items() if k not in drop}
    if isinstance(node, list):
        return [_loosen(v) for v in node]
    return node


def schema_for(allowed: tuple[str, ...] = tuple(ACTIONS), agents: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON schema of the allowed actions, for the model's ``response_format`` (the full bounds
    are checked by `parse_action` on what comes back). With `agents`, a message may only be
    addressed to one of those names: the model cannot invent a recipient."""
    schema: dict[str, Any] = _loosen(msgspec.json.schema(_union(allowed)))
    if agents:
        for definition in schema.get("$defs", {}).values():
            if definition.get("title") == "MessageAgent":
                definition["properties"]["to"] = {"enum": sorted(agents)}
    return schema


def parse_action(raw: str | bytes, allowed: tuple[str, ...] = tuple(ACTIONS)) -> _Action:
    """The model's text as an allowed action, or `ActionError` (``too_large``, ``not_json``,
    ``not_allowed``, ``invalid``); nothing that fails here ever runs."""
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_ACTION_BYTES:
        raise ActionError("too_large", f"an action is at most {MAX_ACTION_BYTES} bytes")
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ActionError("not_json", f"not one JSON object: {exc}") from None
    if not isinstance(doc, dict):
        raise ActionError("not_json", "an action is one JSON object")
    name = doc.get("action")
    if name not in allowed:
        raise ActionError("not_allowed", f"action {name!r} is not one of {', '.join(allowed)}")
    try:
        return msgspec.convert(doc, ACTIONS[name], strict=True)
    except msgspec.ValidationError as exc:
        raise ActionError("invalid", f"{name}: {exc}") from None


def _chars(t: Any) -> int:
    """The longest JSON text a value of this msgspec type can take (capped strings and lists count
    their bounds; an uncapped pattern string counts `UNCAPPED_CHARS`)."""
    if isinstance(t, msgspec.inspect.StrType):
        return t.max_length if t.max_length is not None else UNCAPPED_CHARS
    if isinstance(t, msgspec.inspect.ListType):
        return (t.max_length or 1) * (_chars(t.item_type) + 4)
    if isinstance(t, msgspec.inspect.LiteralType):
        return max(len(str(v)) + 2 for v in t.values)
    return 8  # an integer or a boolean


def token_budget(allowed: tuple[str, ...] = tuple(ACTIONS)) -> int:
    """The completion tokens the longest allowed action needs when every text is at its cap (at
    `CHARS_PER_TOKEN`, plus each field's name and punctuation), within the brain's limit: a budget
    from the schema's own bounds, so no valid action is cut by it."""
    need = 0
    for name in allowed:
        info = msgspec.inspect.type_info(ACTIONS[name])
        assert isinstance(info, msgspec.inspect.StructType)
        chars = sum(_chars(f.type) for f in info.fields)
        need = max(need, TAG_TOKENS + FIELD_TOKENS * len(info.fields) + -(-chars // CHARS_PER_TOKEN))
    return min(MAX_TOKENS, max(MIN_TOKENS, need))


def describe(allowed: tuple[str, ...] = tuple(ACTIONS)) -> str:
    """One line per allowed action for the prompt: its name, fields (with the length a text may
    have: a small model writes past a cap it is not told) and purpose."""
    lines = []
    for name in allowed:
        cls = ACTIONS[name]
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        fields = ", ".join(
            f"{f.name} (at most {f.type.max_length} characters)"
            if isinstance(f.type, msgspec.inspect.StrType) and f.type.max_length and f.type.pattern is None
            else f.name
            for f in info.fields
        )
        lines.append(f'- {{"action": "{name}", {fields}}}: {(cls.__doc__ or "").strip()}')
    return "\n".join(lines)
