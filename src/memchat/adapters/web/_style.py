"""The page's look: a Gradio theme with fonts Gradio ships (no font CDN) and a little CSS."""

from __future__ import annotations

import gradio as gr

__all__ = ["CSS", "theme"]


def theme() -> gr.themes.Base:
    """Soft indigo, with fonts served by Gradio itself so the page makes no outside requests."""
    return gr.themes.Soft(
        primary_hue="indigo",
        secondary_hue="slate",
        neutral_hue="slate",
        radius_size="md",
        font=[gr.themes.LocalFont("IBM Plex Sans"), "ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=[gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "monospace"],
    )


CSS = """
.mc-header { display: flex; align-items: baseline; gap: .75rem; margin: 0 0 .25rem 0; }
.mc-header h1 { font-size: 1.35rem; font-weight: 600; margin: 0; }
.mc-header span { color: var(--body-text-color-subdued); font-size: .9rem; }
#mc-who { color: var(--body-text-color-subdued); font-size: .85rem; }
.mc-sidebar-title { font-weight: 600; font-size: 1.05rem; margin: .25rem 0 .5rem 0; }
#mc-conversations { max-height: 48vh; overflow-y: auto; }
#mc-conversations .wrap { flex-direction: column; gap: 2px; }
#mc-conversations label {
  width: 100%; border-radius: 8px; padding: 6px 10px; font-size: .9rem; justify-content: flex-start;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
}
#mc-conversations input[type=radio] { display: none; }
#mc-conversations label span { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#mc-conversations label { background: transparent; border: none; box-shadow: none;
                          color: var(--body-text-color); cursor: pointer; }
#mc-conversations label:hover { background: var(--background-fill-secondary); }
#mc-conversations label.selected { background: var(--color-accent-soft);
                                   color: var(--body-text-color); font-weight: 600; }

.mc-meter { display: flex; align-items: center; gap: .75rem; font-size: .85rem;
            padding: 2px 4px; }
.mc-meter-bar { flex: 0 0 200px; height: 8px; border-radius: 999px; overflow: hidden;
                background: var(--neutral-200); }
.dark .mc-meter-bar { background: var(--neutral-700); }
.mc-meter-fill { height: 100%; background: #16a34a; transition: width .3s ease; }
.mc-meter-text { color: var(--body-text-color-subdued); font-variant-numeric: tabular-nums; }
.mc-meter[data-level=warn] .mc-meter-fill { background: #f59e0b; }
.mc-meter[data-level=warn] .mc-meter-text { color: #b45309; font-weight: 600; }
.mc-meter[data-level=critical] .mc-meter-fill { background: #dc2626; }
.mc-meter[data-level=critical] .mc-meter-text { color: #b91c1c; font-weight: 600; }
#mc-notice { font-size: .85rem; color: var(--body-text-color-subdued); min-height: 0; }
#mc-notice p { margin: 0; }
#mc-notice:empty, #mc-notice .prose:empty { display: none; }
.mc-hint { font-size: .85rem; color: var(--body-text-color-subdued); align-self: center; }
.mc-hint p { margin: 0; }

/* Long chats: the browser lays out and paints only the messages on screen. Gradio measures the
   chat after every streamed update (to keep it scrolled down), and without this each
   measurement laid out every message, before the first token (docs/benchmarks.md, web). */
#mc-chat .message-row { content-visibility: auto; contain-intrinsic-size: auto 120px; }

#mc-input textarea { font-size: 1rem; }
#mc-send, #mc-stop { min-width: 96px; max-width: 120px; }
.mc-actions button { font-size: .85rem; }

.mc-insp { font-size: .88rem; }
.mc-insp-head { color: var(--body-text-color-subdued); margin: 0 0 .5rem 0; }
.mc-insp-section { margin: 0 0 1rem 0; }
.mc-insp-section h4 { margin: .25rem 0; font-size: .95rem; }
.mc-count { display: inline-block; min-width: 1.5em; padding: 0 .4em; border-radius: 999px;
            background: var(--neutral-200); font-size: .8rem; text-align: center; }
.dark .mc-count { background: var(--neutral-700); }
.mc-insp table { width: 100%; border-collapse: collapse; table-layout: fixed;
                 border: none !important; margin: 0; }
.mc-insp tr { border: none !important; }
.mc-insp th, .mc-insp td { border: none !important; }
.mc-insp th { text-align: left; font-weight: 600; color: var(--body-text-color-subdued);
              border-bottom: 1px solid var(--border-color-primary) !important; padding: 4px 6px; }
.mc-insp th:nth-child(1) { width: 84px; }
.mc-insp th:nth-child(2) { width: 120px; }
.mc-insp th:nth-child(3) { width: 64px; }
.mc-insp td { border-bottom: 1px solid var(--border-color-primary) !important; padding: 4px 6px;
              vertical-align: top; overflow-wrap: anywhere; }
.mc-insp tr:hover td { background: var(--background-fill-secondary); }
.mc-picker-buttons { flex-direction: row !important; align-items: flex-end; gap: 6px; }
.mc-insp .mc-num { text-align: right; font-variant-numeric: tabular-nums; }
.mc-insp pre { white-space: pre-wrap; font-size: .8rem; margin: .25rem 0 0 0; }
.mc-tag { display: inline-block; border-radius: 6px; padding: 0 .45em; font-size: .78rem;
          background: var(--neutral-100); border: 1px solid var(--border-color-primary); }
.mc-tag-kept { background: #dcfce7; color: #166534; border-color: #bbf7d0; }
.mc-tag-system { background: #e0e7ff; color: #3730a3; border-color: #c7d2fe; }
.mc-tag-pinned { background: #fef3c7; color: #92400e; border-color: #fde68a; }
.mc-tag-summary, .mc-tag-summarized { background: #f3e8ff; color: #6b21a8; border-color: #e9d5ff; }
.mc-tag-recalled, .mc-tag-score { background: #cffafe; color: #155e75; border-color: #a5f3fc; }
.mc-tag-dropped { background: #fee2e2; color: #991b1b; border-color: #fecaca; }
.mc-empty { color: var(--body-text-color-subdued); }
"""
