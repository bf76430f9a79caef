"""The `/docs` page renders the descriptions' Markdown code spans as code, not as backticks."""

from __future__ import annotations

import re

from gateway.http.openapi import docs_page, openapi_document


def test_docs_page_shows_code_spans_as_code_and_no_backticks() -> None:
    page = docs_page(openapi_document())
    # Schemas are shown as JSON in <pre>: their text stays as written.
    prose = re.sub(r"<pre>.*?</pre>", "", page, flags=re.DOTALL)
    assert "`" not in prose
    assert "e.g. <code>to[3]</code>" in prose
    assert "409 <code>not_cancellable</code>" in prose


def test_code_spans_are_escaped_like_the_rest() -> None:
    document = openapi_document()
    document["info"]["description"] = "Send `<b>` & `a&b`, not <i>."
    page = docs_page(document)
    assert "<p>Send <code>&lt;b&gt;</code> &amp; <code>a&amp;b</code>, not &lt;i&gt;.</p>" in page
