"""XSS: HTML and script payloads in messages, replies, titles and imported transcripts are
inert in the web app (a real ``memchat web`` in Chromium: no script runs, no dialog opens, no
element gets an event-handler attribute or a ``javascript:`` link) and in exports (the JSON
export round-trips the payloads as data; the Markdown export, rendered as CommonMark with raw
HTML allowed and opened in Chromium, runs nothing either).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from tests.stubs.openai_stub import ok
from tests.web.conftest import Pages, bot_texts, wait_for, wait_idle

from .conftest import WebProcess, run_cli
from .upstream import FaultyUpstream

pytestmark = pytest.mark.browser

PAYLOADS = [
    '<img src=x onerror="window.__xss=1;alert(1)">',
    "<script>window.__xss=2;alert(2)</script>",
    '<a href="javascript:window.__xss=3">click me</a>',
    "[md link](javascript:window.__xss=4)",
    '![md image](x" onerror="window.__xss=5)',
    '"><svg onload="window.__xss=6">',
    '<iframe srcdoc="<script>parent.__xss=7</script>"></iframe>',
    '<details open ontoggle="window.__xss=8">x</details>',
    "${window.__xss=9} {{constructor.constructor('window.__xss=10')()}}",
    '<style>@import "javascript:window.__xss=11";</style><math><mi xlink:href="javascript:1">',
    "</textarea><img src=x onerror=window.__xss=12>",
]
PAYLOAD = " ".join(PAYLOADS)

INERT = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('#mc-chat *, #mc-sidebar *, #mc-inspector *')) {
    for (const a of el.attributes) {
      if (a.name.startsWith('on')) bad.push(el.tagName + ' ' + a.name);
      if (/^\\s*javascript:/i.test(a.value)) bad.push(el.tagName + ' ' + a.name + '=' + a.value);
    }
    if (['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED'].includes(el.tagName)) bad.push(el.tagName);
  }
  return {bad, xss: window.__xss === undefined ? null : window.__xss};
}"""


def assert_inert(page: Any, pages: Pages, where: str) -> None:
    time.sleep(0.3)  # an onerror fires once its image failed to load
    found = page.evaluate(INERT)
    assert found == {"bad": [], "xss": None}, f"{where}: {found}"
    assert pages.dialogs == [], f"{where}: a dialog opened: {pages.dialogs}"


def test_payloads_in_messages_replies_titles_and_imports(
    upstream: FaultyUpstream, web_app: WebProcess, pages: Pages, tmp_path: Path
) -> None:
    upstream.script("xss", ok(f"Here you go: {PAYLOAD}", chunk_size=40))
    page = pages.open(web_app.url)
    page.locator("#mc-input textarea").fill(f"[case xss] {PAYLOAD}")
    page.locator("#mc-send").click()
    wait_for(lambda: any("Here you go" in t for t in bot_texts(page)), timeout=30)
    wait_idle(page)
    for link in page.locator("#mc-chat a").all():  # following a link runs nothing either
        href = link.get_attribute("href") or ""
        assert not href.strip().lower().startswith("javascript"), href
    assert_inert(page, pages, "a message and its reply")
    page.get_by_role("tab", name="Context inspector").click()
    page.locator("#mc-inspector table").first.wait_for()
    assert_inert(page, pages, "the context inspector")
    page.get_by_text("Rename or delete").click()
    page.locator("#mc-title input, #mc-title textarea").fill(PAYLOADS[5] + PAYLOADS[0])
    page.locator("#mc-rename").click()
    wait_for(lambda: "svg" in page.locator("#mc-conversations").inner_text())
    assert_inert(page, pages, "a title")
    upload = tmp_path / "payload.json"
    upload.write_text(
        json.dumps(
            {
                "title": PAYLOADS[0],
                "messages": [
                    {"role": "user", "content": PAYLOAD},
                    {"role": "assistant", "content": PAYLOAD},
                ],
            }
        )
    )
    page.get_by_text("Export / import").click()
    with page.expect_file_chooser() as chooser:
        page.locator("#mc-import").click()
    chooser.value.set_files(str(upload))
    wait_for(lambda: len(bot_texts(page)) == 1 and "onerror" in bot_texts(page)[0], timeout=30)
    assert_inert(page, pages, "an imported transcript")


def test_exports_are_inert(upstream: FaultyUpstream, tmp_path: Path, pages: Pages) -> None:
    from .conftest import hermetic_env

    env = hermetic_env(tmp_path)
    url = f"sqlite:///{tmp_path}/x.db"
    upload = tmp_path / "payload.jsonl"
    upload.write_text(
        "".join(
            json.dumps(m) + "\n"
            for m in [
                {"role": "user", "content": PAYLOAD},
                {"role": "assistant", "content": PAYLOAD},
            ]
        )
    )
    made = run_cli(
        ["import", str(upload), "--name", PAYLOADS[0], "--store", url, "--strategy", "budget"], env
    )
    assert made.returncode == 0, made
    exported = run_cli(["export", PAYLOADS[0], "--store", url], env)
    assert exported.returncode == 0, exported
    data = json.loads(exported.stdout)
    assert [m["content"] for m in data["messages"]] == [PAYLOAD, PAYLOAD]  # data, unchanged
    assert data["title"] == PAYLOADS[0]
    markdown = run_cli(["export", PAYLOADS[0], "-f", "markdown", "--store", url], env)
    assert markdown.returncode == 0, markdown
    html = MarkdownIt("commonmark").render(markdown.stdout)  # raw HTML allowed, as CommonMark
    page = pages.context().new_page()
    page.on("dialog", lambda d: (pages.dialogs.append(d.message), d.dismiss()))
    page.set_content(f"<div id='mc-chat'>{html}</div>")
    assert_inert(page, pages, "the Markdown export, rendered")
    assert "onerror" in page.locator("#mc-chat").inner_text()  # shown as text, not dropped
