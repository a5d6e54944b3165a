"""A griffe extension for the API pages: the project's ``Example:`` docstring sections
(singular, as the house style writes them) are read as Google-style ``Examples:`` sections,
so that their ``>>>`` lines render as code rather than as Markdown."""

from __future__ import annotations

import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", flags=re.M)


class ExampleSections(griffe.Extension):
  """Renames ``Example:`` to ``Examples:`` in every docstring griffe loads."""

  def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
    if obj.docstring is not None:
      obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
