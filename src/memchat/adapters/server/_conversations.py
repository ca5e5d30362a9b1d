"""The server's conversations: ids scoped by owner, created on first use, listed, forked.

Ids. A client names conversations by its own ids (``[A-Za-z0-9][A-Za-z0-9_.:-]*``, at most 128
characters; ``new`` is reserved) or by those the server makes (``conv_`` + 24 hex digits).
Two API keys may use the same id for two different conversations: in the store, an owner's
conversation ``x`` is ``{owner}/x`` (an open server's owner is "", so its ids are stored as
they are, as the CLI makes them). A conversation another key owns is never found, and an id
another key uses can still be created: nothing tells one key what another has (404, never
403). Conversations made by ``--keys`` servers before ids were scoped kept their plain store
ids; they are still found, by the same key, under those ids.

Everything here is blocking (it reads the store): the endpoints run it on a worker thread.

The conversations API, OpenAI-shaped JSON under ``/v1/conversations``.

    POST   /v1/conversations                         create ({id?, title? | name?, metadata?,
                                                     items?})
    GET    /v1/conversations?limit=&after=           list, most recently updated first
    GET    /v1/conversations/{id}                    one conversation
    POST   /v1/conversations/{id}  (or PATCH)        rename / new metadata ({title?, metadata?})
    DELETE /v1/conversations/{id}
    POST   /v1/conversations/{id}/fork               {message_id, id?, title?, metadata?}
    GET    /v1/conversations/{id}/messages?limit=&after=&order=asc|desc
    POST   /v1/conversations/{id}/messages/{mid}/pin      (DELETE …/pin unpins)
    DELETE /v1/conversations/{id}/messages/{mid}          forget it (store, recall index, summary)
    GET    /v1/conversations/{id}/context            what the last turn sent, and why
    GET    /v1/conversations/{id}/items?limit=&after=&order=asc|desc (default desc)&include=
    POST   /v1/conversations/{id}/items              {items: [whole rounds]}: added, no reply
    GET    /v1/conversations/{id}/items/{iid}        one item
    DELETE /v1/conversations/{id}/items/{iid}        forget it (as above); the conversation

Items are the messages in the OpenAI Conversations API's shape (``_items``: what an item is,
and why only whole rounds are added). Pin, forget and adding items go through the
conversation's session, held like a turn (409 while a turn runs, a wait during its upkeep,
across workers too), so the recall index and the summary follow. Delete holds the
conversation the same way. A chat request that names an unknown id creates
it: POST here is for a title or metadata up front, or to be told the id is taken (409).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...core.errors import AlreadyExists, NotFound
from ...core.messages import Message
from ...core.store import ConversationInfo, Store
from ...core.tokens import message_tokens
from ._context import render_context
from ._errors import ApiError, invalid
from ._items import check_include, item_json, parse_items
from ._request import ServerLimits, parse_json, read_body
from ._sessions import Sessions

__all__ = ["Conversations", "ConversationsApi", "ID", "conversation_json", "message_json"]


ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
NEW = "new"


def new_id() -> str:
    return f"conv_{uuid.uuid4().hex[:24]}"


def no_conversation(api_id: str) -> NotFound:
    return NotFound(f"no conversation {api_id!r}")


def check_id(api_id: str, param: str = "id") -> str:
    if not isinstance(api_id, str) or not ID.fullmatch(api_id) or api_id == NEW:
        raise invalid(
            f"a conversation id is 1 to 128 letters, digits and _ . : - (not 'new'), "
            f"got {api_id!r}"[:300],
            param,
        )
    return api_id


def store_id(owner: str, api_id: str) -> str:
    return f"{owner}/{api_id}" if owner else api_id


def api_id(owner: str, info: ConversationInfo) -> str:
    prefix = f"{owner}/"
    return info.id[len(prefix) :] if owner and info.id.startswith(prefix) else info.id


def conversation_json(owner: str, info: ConversationInfo) -> dict[str, Any]:
    return {
        "id": api_id(owner, info),
        "object": "conversation",
        "created_at": int(info.created_at),
        "updated_at": int(info.updated_at),
        "title": info.title,
        "metadata": dict(info.metadata),
        "message_count": info.message_count,
        "total_tokens": info.total_tokens,
    }


def message_json(m: Message) -> dict[str, Any]:
    return {"id": m.id, "object": "conversation.message", "role": m.role, "content": m.content,
            "created_at": int(m.created_at), "pinned": m.pinned, "tokens": m.tokens}  # fmt: skip


class Conversations:
    """An owner's view of the store's conversations."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def find(self, owner: str, name: str) -> ConversationInfo:
        """The owner's conversation ``name``; NotFound for any other (or a malformed id)."""
        if not isinstance(name, str) or not ID.fullmatch(name):
            raise no_conversation(str(name)[:200])
        candidates = [store_id(owner, name), name] if owner else [name]
        for sid in candidates:  # the scoped id, then a plain one from before ids were scoped
            try:
                info = self.store.get_conversation(sid)
            except NotFound:
                continue
            if info.owner == owner:
                return info
        raise no_conversation(name)

    def create(
        self,
        owner: str,
        name: str | None,
        title: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> ConversationInfo:
        """A new conversation (``name`` None: the server picks the id); 409 if it exists."""
        name = new_id() if name is None else check_id(name)
        try:
            self.find(owner, name)
        except NotFound:
            pass
        else:
            raise _exists(name)
        try:
            return self.store.create_conversation(
                title, owner=owner, conversation_id=store_id(owner, name), metadata=metadata
            )
        except AlreadyExists:
            raise _exists(name) from None

    def ensure(self, owner: str, name: str, title: str) -> ConversationInfo:
        """The conversation ``name``, created now if it does not exist (first use)."""
        try:
            return self.find(owner, name)
        except NotFound:
            check_id(name, "conversation")
        try:
            return self.store.create_conversation(
                title, owner=owner, conversation_id=store_id(owner, name)
            )
        except AlreadyExists:  # another request created it meanwhile
            return self.find(owner, name)

    def page(self, owner: str, limit: int, after: str | None) -> dict[str, Any]:
        """A page of the owner's conversations, most recently updated first."""
        infos = self.store.list_conversations(owner=owner)
        ids = [api_id(owner, i) for i in infos]
        start = 0
        if after is not None:
            if after not in ids:
                raise invalid(f"'after' names no conversation of yours: {after!r}", "after")
            start = ids.index(after) + 1
        data = [conversation_json(owner, i) for i in infos[start : start + limit]]
        return _page(data, has_more=start + limit < len(infos))

    def fork(
        self, owner: str, source: str, message_id: str, name: str | None, title: str | None,
        metadata: Mapping[str, str] | None,
    ) -> ConversationInfo:  # fmt: skip
        """A new conversation holding ``source``'s messages up to ``message_id`` (with the
        summary, when it covers no later message)."""
        info = self.find(owner, source)
        messages = self.store.load(info.id)
        at = next((i for i, m in enumerate(messages) if m.id == message_id), None)
        if at is None:
            raise NotFound(f"no message {message_id!r} in conversation {source!r}")
        kept = [replace(m) for m in messages[: at + 1]]
        made = self.create(owner, name, info.title if title is None else title,
                           info.metadata if metadata is None else metadata)  # fmt: skip
        try:
            self.store.append(made.id, kept)
            summary = self.store.get_summary(info.id)
            if summary is not None and summary.covers_until in {m.id for m in kept}:
                self.store.save_summary(made.id, summary.text, summary.covers_until)
        except BaseException:
            self.store.delete_conversation(made.id)
            raise
        return self.store.get_conversation(made.id)

    def messages(
        self, owner: str, name: str, limit: int, after: str | None, order: str,
        render: Callable[[Message], dict[str, Any]] = message_json,
    ) -> dict[str, Any]:  # fmt: skip
        """A page of the conversation's messages, each rendered by ``render``."""
        info = self.find(owner, name)
        stored = self.store.load(info.id)
        if order == "desc":
            stored.reverse()
        start = 0
        if after is not None:
            at = next((i for i, m in enumerate(stored) if m.id == after), None)
            if at is None:
                raise NotFound(f"no message {after!r} in conversation {name!r}")
            start = at + 1
        data = [render(m) for m in stored[start : start + limit]]
        return _page(data, has_more=start + limit < len(stored))


def _exists(name: str) -> ApiError:
    return ApiError(409, f"a conversation with id {name!r} already exists", "conversation_exists",
                    "id")  # fmt: skip


def _page(data: Sequence[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    first = data[0]["id"] if data else None
    last = data[-1]["id"] if data else None
    return {"object": "list", "data": list(data), "first_id": first, "last_id": last,
            "has_more": has_more}  # fmt: skip


MAX_PAGE = 100
METADATA_PAIRS, METADATA_KEY, METADATA_VALUE, TITLE = 16, 64, 512, 200


class ConversationsApi:
    """The endpoints; each ``async (request, owner) -> Response``."""

    def __init__(self, conversations: Conversations, sessions: Sessions, limits: ServerLimits):
        self.conversations = conversations
        self.sessions = sessions
        self.limits = limits

    def routes(self) -> list[tuple[str, list[str], Callable[[Request, str], Awaitable[Response]]]]:
        base = "/v1/conversations"
        return [
            (base, ["GET", "POST"], self.collection),
            (base + "/{cid}", ["GET", "POST", "PATCH", "DELETE"], self.one),
            (base + "/{cid}/fork", ["POST"], self.fork),
            (base + "/{cid}/messages", ["GET"], self.messages),
            (base + "/{cid}/messages/{mid}", ["DELETE"], self.forget),
            (base + "/{cid}/messages/{mid}/pin", ["POST", "DELETE"], self.pin),
            (base + "/{cid}/context", ["GET"], self.context),
            (base + "/{cid}/items", ["GET", "POST"], self.items),
            (base + "/{cid}/items/{iid}", ["GET", "DELETE"], self.item),
        ]

    # -- endpoints ----------------------------------------------------------------------------
    async def collection(self, request: Request, owner: str) -> Response:
        if request.method == "GET":
            limit, after = _limit(request), request.query_params.get("after")
            return await _json(self.conversations.page, owner, limit, after)
        body = await self._body(request, optional=True)
        _known(body, ("id", "title", "name", "metadata", "items"))
        name = _string(body, "id")
        title, metadata = _title(body) or "", _metadata(body)
        seed = [] if body.get("items") is None else parse_items(body["items"], self.limits,
                                                                 required=False)  # fmt: skip

        def create() -> dict[str, Any]:
            info = self.conversations.create(owner, name, title, metadata)
            if seed:
                try:
                    info = self._add(info, seed)
                except BaseException:
                    self.conversations.store.delete_conversation(info.id)
                    raise
            return conversation_json(owner, info)

        return await _json(create)

    async def one(self, request: Request, owner: str) -> Response:
        cid = request.path_params["cid"]
        if request.method == "GET":
            return await _json(lambda: conversation_json(owner, self._find(owner, cid)))
        if request.method == "DELETE":
            return await _json(self._delete, owner, cid)
        body = await self._body(request)
        _known(body, ("title", "name", "metadata"))
        title, metadata = _title(body), _metadata(body)
        if title is None and metadata is None:
            raise invalid("give 'title' or 'metadata' to change", None,
                          "missing_required_parameter")  # fmt: skip
        return await _json(self._update, owner, cid, title, metadata)

    async def fork(self, request: Request, owner: str) -> Response:
        body = await self._body(request)
        _known(body, ("message_id", "id", "title", "name", "metadata"))
        message_id = _string(body, "message_id")
        if message_id is None:
            raise invalid("'message_id' is required: the last message the fork keeps",
                          "message_id", "missing_required_parameter")  # fmt: skip
        name, title, metadata = _string(body, "id"), _title(body), _metadata(body)

        def fork() -> dict[str, Any]:
            info = self.conversations.fork(owner, request.path_params["cid"], message_id, name,
                                           title, metadata)  # fmt: skip
            return conversation_json(owner, info)

        return await _json(fork)

    async def messages(self, request: Request, owner: str) -> Response:
        order = _order(request, "asc")
        limit, after = _limit(request), request.query_params.get("after")
        cid = request.path_params["cid"]
        return await _json(self.conversations.messages, owner, cid, limit, after, order)

    async def pin(self, request: Request, owner: str) -> Response:
        p = request.path_params
        return await _json(self._edit, owner, p["cid"], p["mid"], request.method == "POST")

    async def forget(self, request: Request, owner: str) -> Response:
        p = request.path_params
        return await _json(self._edit, owner, p["cid"], p["mid"], None)

    async def context(self, request: Request, owner: str) -> Response:
        cid = request.path_params["cid"]

        def answer() -> Any:
            info = self._find(owner, cid)
            store = self.conversations.store
            return render_context(cid, store.get_turn_context(info.id), store.load(info.id))

        return await _json(answer)

    async def items(self, request: Request, owner: str) -> Response:
        cid = request.path_params["cid"]
        check_include(request)
        if request.method == "GET":
            order = _order(request, "desc")
            limit, after = _limit(request), request.query_params.get("after")
            page = self.conversations.messages
            return await _json(page, owner, cid, limit, after, order, item_json)
        body = await self._body(request)
        _known(body, ("items",))
        if "items" not in body:
            raise invalid("'items' is required: the messages to add", "items",
                          "missing_required_parameter")  # fmt: skip
        seed = parse_items(body["items"], self.limits)

        def add() -> dict[str, Any]:
            self._add(self._find(owner, cid), seed)
            return _page([item_json(m) for m in seed], has_more=False)

        return await _json(add)

    async def item(self, request: Request, owner: str) -> Response:
        cid, iid = request.path_params["cid"], request.path_params["iid"]
        if request.method == "DELETE":
            return await _json(self._forget_item, owner, cid, iid)
        check_include(request)
        return await _json(lambda: item_json(self._message(owner, cid, iid)))

    # -- blocking parts -----------------------------------------------------------------------
    def _find(self, owner: str, cid: str) -> ConversationInfo:
        return self.conversations.find(owner, cid)

    def _delete(self, owner: str, cid: str) -> dict[str, Any]:
        info = self._find(owner, cid)
        with self.sessions.exclusive(info.id):
            self.conversations.store.delete_conversation(info.id)
        return {"id": cid, "object": "conversation.deleted", "deleted": True}

    def _update(self, owner: str, cid: str, title: str | None, metadata: Any) -> dict[str, Any]:
        info = self._find(owner, cid)
        store = self.conversations.store
        if title is not None:
            store.rename_conversation(info.id, title)
        if metadata is not None:
            store.set_metadata(info.id, metadata)
        return conversation_json(owner, store.get_conversation(info.id))

    def _edit(self, owner: str, cid: str, mid: str, pin: bool | None) -> dict[str, Any]:
        """Pin (True), unpin (False) or forget (None) a message, through its session."""
        info = self._find(owner, cid)
        session, hold = self.sessions.hold(info.id)
        try:
            found = next((m for r in session.history.rounds for m in r if m.id == mid), None)
            if found is None:
                raise NotFound(f"no message {mid!r} in conversation {cid!r}")
            if pin is None:
                session.forget([mid])
                return {"id": mid, "object": "conversation.message.deleted", "deleted": True}
            session.pin(mid, pin)
            return message_json(session.history.find(mid))
        finally:
            hold.release()

    def _add(self, info: ConversationInfo, messages: list[Message]) -> ConversationInfo:
        """Append whole rounds (``_items.parse_items``) through the session, with no reply."""
        session, hold = self.sessions.hold(info.id, info)
        try:
            for m in messages:
                message_tokens(m, session.counter)
            self.conversations.store.append(info.id, messages)
            session.history.extend(messages)
        finally:
            hold.release()
        return self.conversations.store.get_conversation(info.id)

    def _message(self, owner: str, cid: str, mid: str) -> Message:
        info = self._find(owner, cid)
        found = next((m for m in self.conversations.store.load(info.id) if m.id == mid), None)
        if found is None:
            raise NotFound(f"no item {mid!r} in conversation {cid!r}")
        return found

    def _forget_item(self, owner: str, cid: str, mid: str) -> dict[str, Any]:
        """Forget the message as ``DELETE …/messages/{mid}`` does; the conversation after."""
        self._edit(owner, cid, mid, None)
        return conversation_json(owner, self._find(owner, cid))

    async def _body(self, request: Request, *, optional: bool = False) -> dict[str, Any]:
        """The JSON object sent; with ``optional``, no body at all is an empty one."""
        raw = await read_body(request, self.limits.max_body_bytes)
        if optional and not raw.strip():
            return {}
        return parse_json(raw, self.limits)


async def _json(call: Callable[..., Any], *args: Any) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(call, *args))


def _known(body: dict[str, Any], names: tuple[str, ...]) -> None:
    for key in body:
        if key not in names:
            raise invalid(f"unrecognized request argument supplied: {key}", key,
                          "unknown_parameter")  # fmt: skip


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise invalid(f"Invalid type for '{name}': expected a string", name, "invalid_type")
    return value


def _title(body: dict[str, Any]) -> str | None:
    if "title" in body and "name" in body:
        raise invalid("give 'title' or 'name', not both (they are the same)", "name")
    name = "name" if "name" in body else "title"
    title = _string(body, name)
    if title is not None and (len(title) > TITLE or "\n" in title or "\r" in title):
        raise invalid(f"'{name}' is one line of at most {TITLE} characters", name)
    return title


def _metadata(body: dict[str, Any]) -> dict[str, str] | None:
    value = body.get("metadata")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("Invalid type for 'metadata': expected an object", "metadata",
                      "invalid_type")  # fmt: skip
    if len(value) > METADATA_PAIRS:
        raise invalid(f"'metadata' holds at most {METADATA_PAIRS} pairs", "metadata")
    for k, v in value.items():
        if not isinstance(v, str) or len(k) > METADATA_KEY or len(v) > METADATA_VALUE:
            message = (f"metadata keys are strings of at most {METADATA_KEY} characters and "
                       f"values strings of at most {METADATA_VALUE}")  # fmt: skip
            raise invalid(message, f"metadata.{k}"[:100])
    return dict(value)


def _order(request: Request, default: str) -> str:
    order = request.query_params.get("order", default)
    if order not in ("asc", "desc"):
        raise invalid(f"'order' is asc or desc, got {order!r}"[:200], "order")
    return order


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise invalid(f"'limit' is a whole number from 1 to {MAX_PAGE}, got {raw!r}"[:200],
                      "limit")  # fmt: skip
    return int(raw)
