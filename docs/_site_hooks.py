"""Build-time pages of the documentation site (a MkDocs hook, named in ``mkdocs.yml``).

Generated at every build, never stored, so they cannot drift from the code:

- ``reference/cli.md``: the ``--help`` of every command line, from each CLI's ``build_parser``
  (the sweep once per model family, as ``--model NAME --help`` prints it);
- ``gallery.md``: one entry per figure of ``figures/manifest.json`` (caption, the paper it
  reproduces, the command that makes it, its parameters), the images copied from ``figures/``;
- the stored, executed notebooks of ``notebooks/`` as pages (rendered by mkdocs-jupyter, never
  executed here).

Math written `$...$` (inline) or `$$...$$` (display) on a page is MathML in the built page,
converted here from the TeX that ``pymdownx.arithmatex`` leaves (latex2mathml): browsers draw it
natively, so the site loads no script and no font for it.

The functions that write the markdown take plain data and return text, so the tests call them
without MkDocs.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
NOTEBOOKS = ROOT / "notebooks"
#: help text is wrapped at this width whatever the terminal, so every build writes the same page
HELP_COLUMNS = 100


def cli_parsers():
    """[(command, parser)] of every command line, in the order the page lists them."""
    from dynamics.cifar.__main__ import build_parser as cifar_parser
    from dynamics.explore.__main__ import build_parser as explore_parser
    from dynamics.figures.__main__ import build_parser as figures_parser
    from dynamics.sweep.__main__ import build_parser as sweep_parser
    from dynamics.sweep.family import FAMILIES

    out = [("python -m dynamics.sweep", sweep_parser("scalar"))]
    out += [(f"python -m dynamics.sweep --model {m}", sweep_parser(m))
            for m in FAMILIES if m != "scalar"]
    out += [("python -m dynamics.figures", figures_parser()),
            ("python -m dynamics.cifar", cifar_parser()),
            ("python -m dynamics.explore", explore_parser())]
    return out


def _help(parser) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_COLUMNS)  # argparse reads the width from here
    try:
        return parser.format_help()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def cli_markdown(parsers) -> str:
    lines = ["# Command-line reference", "",
             "Generated from each command line's parser when the site is built: what follows is "
             "exactly what `--help` prints. Bad values stop with a one-line error naming the "
             "value (exit status 2).", ""]
    for cmd, parser in parsers:
        lines += [f"## `{cmd}`", "", "```text", _help(parser).rstrip(), "```", ""]
    return "\n".join(lines)


def _fence(text: str) -> str:
    return "```text\n" + text.rstrip() + "\n```"


#: the paper a figure reproduces, as its caption opens: "Tian et al. (2021) Fig. 3: ...",
#: "Su (2020)'s toy SimSiam experiment: ..."
_REPRODUCES = re.compile(r"^([A-Z][\w .&,-]*?\(\d{4}\)(?: Fig\. \d+)?)(?=:|'s )")
#: parameters that describe the paper's setting rather than this project's run
_PAPER_KEYS = (("paper", "The paper's setting"), ("source", "Source"),
               ("differences", "Differences from the paper"))


def _value(v) -> str:
    return v if isinstance(v, str) else "`" + json.dumps(v, sort_keys=True) + "`"


def gallery_markdown(manifest: dict) -> str:
    """The gallery page of a figures manifest: per figure its image, caption, the paper it
    reproduces (from the caption) with the paper's setting and the differences from it, the
    command and every other parameter."""
    lines = ["# Figure gallery", "",
             "Every figure of `figures/`, generated from `figures/manifest.json` when the site is "
             f"built (manifest of {manifest.get('updated', 'unknown date')}, package version "
             f"{manifest.get('package_version', '?')}, revision "
             f"`{str(manifest.get('git_revision', '?'))[:12]}`). Regenerate them with "
             f"`{manifest.get('regenerate', 'python -m dynamics.figures')}`.", ""]
    for name, entry in sorted(manifest["figures"].items()):
        params = dict(entry.get("params", {}))
        caption = entry.get("caption", "")
        png = [f for f in entry.get("files", []) if f.endswith(".png")]
        lines += [f"## {name}", ""]
        if png:
            lines += [f"![{name}](figures/{png[0]})", ""]
        lines += [caption, ""]
        m = _REPRODUCES.match(caption)
        lines += [f"- **Reproduces:** {m.group(1) if m else 'no published figure'}"]
        for key, label in _PAPER_KEYS:
            if params.get(key) is not None:
                lines += [f"- **{label}:** {_value(params[key])}"]
            params.pop(key, None)
        lines += ["", "**Command:**", "", "```bash", entry["command"], "```", ""]
        if entry.get("quick"):
            lines += ["*Made with `--quick` (small settings).*", ""]
        lines += ["**Parameters:**", "", _fence(json.dumps(params, indent=2, sort_keys=True)), ""]
        files = ", ".join(f"[{f}](figures/{f})" for f in entry.get("files", []))
        lines += [f"Files: {files}", ""]
    return "\n".join(lines)


#: what arithmatex (generic mode) writes: <span class="arithmatex">\(TeX\)</span> inline,
#: <div class="arithmatex">\[TeX\]</div> for display math; the TeX is HTML-escaped
_ARITHMATEX = re.compile(r'<(span|div) class="arithmatex">\s*\\([(\[])(.*?)\\[)\]]\s*</\1>', re.S)


def mathml(page_html: str) -> str:
    """``page_html`` with arithmatex's TeX as MathML (display math as a block)."""
    from latex2mathml.converter import convert

    def one(m):
        display = "block" if m.group(2) == "[" else "inline"
        return convert(html.unescape(m.group(3)).strip(), display=display)

    return _ARITHMATEX.sub(one, page_html)


def on_page_content(html_text, page, config, files):  # noqa: D401 - MkDocs event
    return mathml(html_text)


def on_files(files, config):  # noqa: D401 - MkDocs event
    from mkdocs.structure.files import File

    files.append(File.generated(config, "reference/cli.md", content=cli_markdown(cli_parsers())))
    manifest = json.loads((FIGURES / "manifest.json").read_text())
    files.append(File.generated(config, "gallery.md", content=gallery_markdown(manifest)))
    for entry in manifest["figures"].values():
        for f in entry.get("files", []):
            files.append(File.generated(config, f"figures/{f}", abs_src_path=str(FIGURES / f)))
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        # a plain File (not File.generated): mkdocs-jupyter's wrapper reads its source path
        files.append(File(f"notebooks/{nb.name}", src_dir=str(ROOT), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files


# Before the plugins' own on_files, so mkdocs-jupyter sees the notebooks added here.
try:
    from mkdocs.plugins import event_priority

    on_files = event_priority(100)(on_files)
except ImportError:  # the module is imported without MkDocs by the tests
    pass
