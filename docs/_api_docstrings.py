"""The package's docstrings, written in reStructuredText with Sphinx roles, as Markdown for the
API reference (a griffe extension, named in ``mkdocs.yml``; the docstrings themselves stay as
they are).

At build time, before mkdocstrings renders them:

- a Sphinx role (``:func:`x```, ``:class:`~a.b.C```, ``:meth:`title <a.b>```, with or without
  the ``py:`` domain) becomes a code span; where its target is an object of the package, the
  span is a cross-reference, resolved as Sphinx would (the docstring's own scope outwards, then
  the full path) and written as an optional autoref: a link where the target is documented on
  the site, plain text where it is not (a private module, a name the filters leave out);
- the literal-block marker ``::`` ending a paragraph becomes ``:`` (or goes, after a space), as
  reStructuredText prints it; the indented block after it is left as it is (Markdown prints
  it as code).

Double-backtick literals need nothing: they are Markdown code spans as they stand.
"""

from __future__ import annotations

import html
import re
from typing import Callable

try:
    from griffe import Extension
except ImportError:  # the tests import the rewriting without the docs extra
    Extension = object

ROLES = ("func", "class", "mod", "meth", "attr", "data", "obj", "exc", "const")
#: ``:role:`target``` or ``:role:`title <target>```, with an optional ``py:`` domain
ROLE = re.compile(r":(?:py:)?(" + "|".join(ROLES) + r"):`([^`]+)`")
_TITLED = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.S)


def _code(text: str) -> str:
    """A Markdown code span of ``text`` (any backticks inside kept literal)."""
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _role(match: re.Match, resolve: Callable[[str], str | None]) -> str:
    body = " ".join(match.group(2).split())  # a role may wrap across lines
    titled = _TITLED.match(body)
    if titled:
        title, target = titled.group(1), "".join(titled.group(2).split())
    else:
        target = "".join(body.lstrip("!").split())  # a dotted path has no spaces
        title = target.lstrip("~.")
        if target.startswith("~"):
            title = title.rsplit(".", 1)[-1]
    target = target.lstrip("~")
    path = resolve(target)
    if path is None:
        return _code(title)
    return f'<autoref identifier="{html.escape(path)}" optional>{_code(title)}</autoref>'


def _literal_markers(text: str) -> str:
    """``para::`` -> ``para:`` and a lone `` ::`` dropped, where an indented block follows."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        rest = [ln for ln in lines[i + 1:] if ln.strip()]
        indent = len(line) - len(line.lstrip())
        if not rest or len(rest[0]) - len(rest[0].lstrip()) <= indent:
            continue
        stripped = line.rstrip()
        if stripped.strip() == "::":
            lines[i] = ""
        elif stripped[-3].isspace():
            lines[i] = stripped[:-2].rstrip()
        else:
            lines[i] = stripped[:-1]
    return "\n".join(lines)


def _literal_blocks(text: str):
    """Split ``text`` into (is_literal, chunk) runs of lines: literal are the indented blocks
    after a ``::``; joined by newlines, the chunks give ``text`` back."""
    runs, literal, indent = [], False, 0
    for line in text.split("\n"):
        if literal and line.strip() and len(line) - len(line.lstrip()) <= indent:
            literal = False
        if runs and runs[-1][0] == literal:
            runs[-1][1].append(line)
        else:
            runs.append((literal, [line]))
        if not literal and line.rstrip().endswith("::"):
            literal, indent = True, len(line) - len(line.lstrip())
    return [(flag, "\n".join(lines)) for flag, lines in runs]


def rst_to_markdown(text: str, resolve: Callable[[str], str | None] = lambda name: None) -> str:
    """``text`` with its Sphinx roles as Markdown code spans (cross-references where ``resolve``
    gives the target's full path) and its ``::`` markers as printed; literal blocks untouched."""
    parts = [chunk if literal else ROLE.sub(lambda m: _role(m, resolve), chunk)
             for literal, chunk in _literal_blocks(text)]
    return _literal_markers("\n".join(parts))


def _lookup(root, path: str):
    """The object at dotted ``path`` under the package ``root`` (through aliases), or None."""
    names = path.split(".")
    if names[0] != root.name:
        return None
    obj = root
    for name in names[1:]:
        try:
            if obj.is_alias:
                obj = obj.final_target
            obj = obj.members[name]
        except Exception:  # an alias to something outside the package, or no such member
            return None
    try:
        return obj.final_target if obj.is_alias else obj
    except Exception:
        return None


def resolver(obj, root) -> Callable[[str], str | None]:
    """Resolve a role's target as written in ``obj``'s docstring to the full path of an object
    of the package ``root``: first in ``obj``'s scope outwards, then as a full path."""

    def resolve(target: str) -> str | None:
        target = target.lstrip(".")
        head, _, tail = target.partition(".")
        try:
            path = obj.resolve(head)
        except Exception:  # not a name of this scope
            path = None
        for full in ([f"{path}.{tail}" if tail else path] if path else []) + [target]:
            found = _lookup(root, full)
            if found is not None:
                return found.path
        return None

    return resolve


def _objects(obj, seen):
    if obj.is_alias or id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    for member in obj.members.values():
        yield from _objects(member, seen)


class SphinxRoles(Extension):
    """Rewrite every docstring of a loaded package (see the module's docstring)."""

    def on_package(self, *, pkg, **kwargs) -> None:
        for obj in _objects(pkg, set()):
            if obj.docstring is not None and not getattr(obj, "_sphinx_roles_done", False):
                obj.docstring.value = rst_to_markdown(obj.docstring.value, resolver(obj, pkg))
                obj._sphinx_roles_done = True
