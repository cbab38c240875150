"""The wallet's own pages: welcome, create (the words, then their check), restore, unlock.

Every POST here answers either with a redirect (303) to a page's GET, so the
history holds only GETs and Back, Forward or a reload never resubmit a form,
or, for the two forms a person may get partly wrong (the words check and
restore, marked ``data-inplace`` for the page script), with JSON: where to
go next (``{"go": path}``) or what is wrong (``{"error", "clear", "mark"}``).
The page then stays as it is: what was typed right is kept, only the wrong
fields are cleared or marked, and no word or passphrase is ever rendered
back into a page.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import keystore
from ..identity import MnemonicError, UnknownWord, validate_mnemonic, word_spans
from .state import WordsMismatch
from .web import STATE, PageError, render

PASSPHRASE_FIELDS = ["passphrase", "passphrase2"]


def _go(path: str) -> web.Response:
    return web.json_response({"go": path})


def _wrong(message: str, clear: list[str] | None = None, mark: dict[str, Any] | None = None) -> web.Response:
    """A refused in-place form: the message, the fields to empty, the span of a field to mark."""
    return web.json_response({"error": message, "clear": clear or [], "mark": mark}, status=400)


def _sentence(text: str) -> str:
    """A message's first letter in capitals, the rest as written (BIP39 stays BIP39)."""
    return text[:1].upper() + text[1:]


def _passphrase_problem(form: Any) -> str | None:
    """Why the two new-passphrase fields cannot be used (the one rule, `keystore.check_new_passphrase`)."""
    passphrase = str(form.get("passphrase", ""))
    if passphrase != str(form.get("passphrase2", "")):
        return "The two passphrases differ: type both again."
    try:
        keystore.check_new_passphrase(passphrase)
    except keystore.WeakPassphrase as exc:
        return f"{_sentence(str(exc))}: type both again."
    return None


async def welcome(request: web.Request) -> web.Response:
    if request.app[STATE].has_keystore:
        raise web.HTTPSeeOther("/unlock")
    return render(request, "welcome.html")


# ---------------------------------------------------------------- create


async def create_page(request: web.Request) -> web.Response:
    """The words of the creation under way (the same on every visit), or a button to start one."""
    state = request.app[STATE]
    if state.has_keystore:
        raise PageError("This stick already holds a wallet; unlock it instead.")
    if state.pending is None:
        return render(request, "create.html", words=None)
    words = state.pending.wallet.mnemonic().split()
    return render(request, "create.html", words=list(enumerate(words, 1)))


async def create_start(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.has_keystore:
        raise PageError("This stick already holds a wallet; unlock it instead.")
    state.start_creation()  # a creation under way keeps its words
    raise web.HTTPSeeOther("/create")


async def create_check(request: web.Request) -> web.Response:
    """Three words asked back, with the words themselves off the page."""
    state = request.app[STATE]
    if state.pending is None:
        raise web.HTTPSeeOther("/create")
    return render(
        request, "confirm.html", positions=state.pending.confirm_positions, min_passphrase=keystore.MIN_PASSPHRASE_CHARS
    )


async def create_confirm(request: web.Request) -> web.Response:
    state = request.app[STATE]
    form = await request.post()
    pending = state.pending
    if pending is None:
        return _wrong("No wallet is being created any more (cancelled, or forgotten after a long pause): start again.")
    answers = {n: str(form.get(f"word{n}", "")) for n in pending.confirm_positions}
    problems, clear = [], []
    try:
        state.check_words(answers)
    except WordsMismatch as exc:
        problems.append(f"{_sentence(str(exc))}.")
        clear += [f"word{n}" for n in exc.wrong]
    if (problem := _passphrase_problem(form)) is not None:
        problems.append(problem)
        clear += PASSPHRASE_FIELDS
    if problems:
        return _wrong(" ".join(problems), clear)
    state.finish_creation(answers, str(form.get("passphrase", "")))
    return _go("/home")


async def create_cancel(request: web.Request) -> web.Response:
    request.app[STATE].drop_pending()
    raise web.HTTPSeeOther("/welcome")


# ---------------------------------------------------------------- restore


async def restore_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.unlocked:
        raise web.HTTPSeeOther("/home")
    return render(
        request,
        "restore.html",
        existing=state.has_keystore,
        can_replace=state.can_replace_keystore,
        public=state.public_keystore(),
        problem=state.keystore_problem(),
        min_passphrase=keystore.MIN_PASSPHRASE_CHARS,
    )


async def restore_submit(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.unlocked:
        return _go("/home")
    form = await request.post()
    text = str(form.get("words", ""))
    if state.has_keystore and form.get("replace") != "yes":
        return _wrong("This stick already holds a wallet: tick the box to replace it, or go back and unlock it.")
    try:
        validate_mnemonic(text)
    except UnknownWord as exc:
        start, end = word_spans(text)[exc.position - 1]
        mark = {"field": "words", "start": start, "end": end, "suggestions": exc.suggestions}
        return _wrong(_sentence(str(exc)), mark=mark)
    except MnemonicError as exc:
        return _wrong(f"{_sentence(str(exc))}.", mark={"field": "words", "start": 0, "end": len(text)})
    if (problem := _passphrase_problem(form)) is not None:
        return _wrong(problem, PASSPHRASE_FIELDS)
    try:
        state.restore(text, str(form.get("passphrase", "")), str(form.get("bip39", "")), replace=state.has_keystore)
    except (ValueError, keystore.KeystoreError) as exc:  # e.g. a stick that may not be written (hosted mode)
        return _wrong(f"{_sentence(str(exc))}.")
    return _go("/home")


# ---------------------------------------------------------------- unlock


async def unlock(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not state.has_keystore:
        raise web.HTTPSeeOther("/welcome")
    if state.unlocked:
        raise web.HTTPSeeOther("/home")  # an old unlock form sent again never locks, nor unlocks twice
    if (problem := state.keystore_problem()) is not None:  # said before any passphrase is typed for nothing
        return render(request, "damaged.html", problem=problem, status=200 if request.method == "GET" else 409)
    public = state.public_keystore()
    if request.method == "GET":
        return render(request, "unlock.html", public=public)
    form = await request.post()
    try:
        state.unlock(str(form.get("passphrase", "")))
    except keystore.KeystoreError as exc:
        return render(request, "unlock.html", public=public, message=str(exc), status=400)
    raise web.HTTPSeeOther("/home")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/welcome", welcome)
    app.router.add_get("/create", create_page)
    app.router.add_post("/create", create_start)
    app.router.add_get("/create/check", create_check)
    app.router.add_post("/create/confirm", create_confirm)
    app.router.add_post("/create/cancel", create_cancel)
    app.router.add_get("/restore", restore_page)
    app.router.add_post("/restore", restore_submit)
    app.router.add_route("*", "/unlock", unlock)
