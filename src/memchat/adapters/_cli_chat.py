"""`memchat chat`: the interactive loop (streaming, meter, cancel, retry) and its command."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from ..core.errors import MemchatError, NotFound, UsageError
from ..core.session import ChatSession, Reply
from ..core.store import ConversationInfo, Store
from ..settings import Settings, build_session
from ._cli_common import App, hear_early, one_line, settings_options, untold
from ._cli_render import meter_text, preview

__all__ = ["ChatLoop", "chat"]

PROMPT = "[bold green]you ›[/] "
ANSWER = "[bold cyan]memchat ›[/] "


class ChatLoop:
    """Reads lines, sends messages, runs slash commands; a failed turn keeps the message."""

    def __init__(
        self,
        app: App,
        session: ChatSession,
        settings: Settings,
        conversation: ConversationInfo | None = None,
        *,
        created: bool = False,
    ) -> None:
        self.app = app
        self.out = app.out
        self.session = session
        self.settings = settings
        self.conversation = conversation
        self.created = created  # made by this chat: deleted at the end if still empty
        self.untitled = created  # titled from the first message
        self.pending: str | None = None
        self.left_out = 0

    @property
    def store(self) -> Store | None:
        return self.session.store

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        from ._cli_slash import run_slash

        self.banner()
        try:
            while (line := self.read()) is not None:
                if not line.strip():
                    continue
                if line.startswith("/") and not line.startswith("//"):
                    if not run_slash(self, line.strip()):
                        break
                else:
                    self.turn(line[1:] if line.startswith("//") else line)
        finally:
            self.finish()

    def read(self) -> str | None:
        """The next line; None at end of input or on a second Ctrl-C in a row."""
        for attempt in (1, 2):
            try:
                return self.out.input(PROMPT)
            except EOFError:
                break
            except KeyboardInterrupt:
                if attempt == 2:
                    break
                self.out.print("\n[dim](Ctrl-C again, Ctrl-D or /exit to quit)[/]")
        self.out.print()
        return None

    def banner(self) -> None:
        s = self.session
        where = "not saved (store = none)"
        if self.created:
            where = "new conversation"
        elif self.conversation is not None:
            count = len(s.history) - len(s.history.system)
            where = f"conversation {escape(self.conversation.title)!r} ({count:,} messages)"
        self.out.print(
            f"[bold]memchat[/] · {escape(s.backend.model)} ({self.settings.backend}) · "
            f"strategy {s.strategy.name} · window {s.budget.window:,} tokens\n{where}\n"
            "[dim]/help lists the commands · /exit or Ctrl-D quits · Ctrl-C stops a reply[/]"
        )

    # -- one turn -------------------------------------------------------------------------
    def turn(self, text: str) -> None:
        try:
            reply = self.session.send(text)
        except MemchatError as exc:
            self.error(exc)
            return
        self.out.print(ANSWER, end="")
        told = hear_early(reply, self.early)
        try:
            for chunk in reply:
                self.out.print(chunk, end="", markup=False, highlight=False, soft_wrap=True)
        except KeyboardInterrupt:
            reply.close()
            self.out.print()
            self.keep(text, "cancelled: nothing was saved")
            return
        except MemchatError as exc:
            self.out.print()
            self.error(exc)
            self.keep(text, "the turn failed and nothing was saved")
            return
        self.out.print()
        self.pending = None
        self.after(reply, text, told)
        for note in self.session.upkeep():  # a summary fold can take a while: after the meter
            self.out.print(f"[orange1]! {escape(note)}[/]")

    def early(self, note: str) -> None:
        """A notice before the answer has any text: on its own line, then the answer's mark."""
        self.out.print(f"\n[orange1]! {escape(note)}[/]")
        self.out.print(ANSWER, end="")

    def keep(self, text: str, why: str) -> None:
        self.pending = text
        self.out.print(f"[orange1]{why}; your message was kept — /retry sends it again:[/]")
        self.out.print(text, style="dim", markup=False, highlight=False)

    def after(self, reply: Reply, text: str, told: list[str]) -> None:
        for notice in untold(reply.notices, told):
            self.out.print(f"[orange1]! {escape(notice)}[/]")
        context = reply.context
        left_out = len(context.dropped) if context is not None else 0
        if left_out > self.left_out:
            self.out.print(
                f"[orange1]trimmed: {left_out:,} older messages are no longer sent to fit the "
                "window (/context shows what was sent)[/]"
            )
        self.left_out = left_out
        self.out.print(meter_text(self.session.meter(), context))
        if self.untitled and self.conversation is not None and self.store is not None:
            self.untitled = False
            self.store.rename_conversation(self.conversation.id, preview(text, 50))

    def error(self, exc: MemchatError) -> None:
        self.out.print(f"[bold red]error:[/] {escape(one_line(exc))}")

    def finish(self) -> None:
        """Remove a conversation this chat created if nothing was said in it."""
        conv, store = self.conversation, self.store
        if conv is None or store is None or not self.created:
            return
        try:
            if store.get_conversation(conv.id).message_count == 0:
                store.delete_conversation(conv.id)
        except MemchatError:
            pass


def _conversation(store: Store | None, name: str | None) -> tuple[ConversationInfo | None, bool]:
    """The conversation to use: NAME (created when missing) or a new one; (info, created)."""
    if store is None:
        if name is not None:
            raise UsageError("--conversation needs a store; storage is off (store = none)")
        return None, False
    if name is None:
        return store.create_conversation("new chat"), True
    try:
        return store.find_conversation(name), False
    except NotFound:
        return store.create_conversation(name), False


@click.command()
@click.option("--conversation", "-c", metavar="NAME", help="Resume (or create) this conversation.")
@settings_options()
@click.pass_obj
def chat(app: App, /, conversation: str | None, **flags: Any) -> None:
    """Chat interactively; the reply streams, a token meter follows each one."""
    settings = app.settings(flags)
    store = app.store(settings)
    backend = app.backend(settings)
    info, created = _conversation(store, conversation)
    try:
        session = build_session(
            settings, store=store, conversation_id=info.id if info else None, backend=backend
        )
    except BaseException:
        if created and store is not None and info is not None:
            store.delete_conversation(info.id)
        raise
    _readline()
    ChatLoop(app, session, settings, info, created=created).run()


def _readline() -> None:
    """Line editing and history for input() on a terminal."""
    import sys

    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401
        except ImportError:  # pragma: no cover - not on every platform
            pass
