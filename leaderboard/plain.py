"""How submitted text reaches the page without becoming markup.

Everything in a results root is written by untrusted submitters. Streamlit renders Markdown
(links, images, ``:color[...]`` directives, and autolinks for bare ``www.`` addresses) in
``st.markdown``, ``st.caption``, headings, alerts and widget labels, so the board's rule is:

- free text (card fields, error messages, not-applicable reasons, problem lines, provenance)
  never goes into a Markdown element, escaped or not: it is shown with ``st.text``, ``st.code``
  or in dataframe cells, which Streamlit draws as plain text;
- a task, method or metric *name* may appear in a heading, escaped by ``escape_markdown``. Names
  are already restricted by the board (``card.NAME_PATTERN``: letters, digits and ``_ . + -``,
  ``/`` between task parts), and escaping every ASCII punctuation character on top of that
  leaves no character that could start emphasis, a link, an autolink or a directive.
"""

from __future__ import annotations

import re

#: every ASCII punctuation character; CommonMark lets each one be backslash-escaped
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def escape_markdown(name: str) -> str:
    """``name`` with every ASCII punctuation character backslash-escaped and line breaks as spaces."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(name.splitlines()))
