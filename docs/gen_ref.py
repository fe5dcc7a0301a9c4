"""The generated half of the documentation site, and what makes the docstrings read well in it.

``mkdocs.yml`` uses this one file three ways:

* **mkdocs-gen-files runs it** and it writes, in memory (nothing lands in ``docs/``):

  - ``api/``: one reference page per public module of torchnde that has an ``__all__`` (every
    public package, and each public module its package does not re-export, such as
    ``torchnde.compat.torchdiffeq``), found by import. Each exported name is rendered once, on the
    page of the package it belongs to (``Dopri5`` on ``torchnde.solvers``); the other pages that
    export it link there. A new public name or package appears without editing anything.
  - ``examples/``: one page per ``examples/*.py`` (its docstring, how to run it, its code).
  - ``configs/``: the shipped ``configs/*.toml``.
  - ``benchmarks.md``: ``benchmarks/README.md``.
  - ``results/``: every registered ``torchnde reproduce`` entry (paper, criterion, the entry's own
    docs) and each run folder published under ``docs/results/<entry>/``.

* **mkdocstrings loads** :class:`TorchndeDocstrings`, a griffe extension that turns the Sphinx
  markup the docstrings use into what Markdown shows: ``:class:`X``` roles become links to X's
  reference entry (code when X is not documented here), ``::`` literal blocks and
  ``.. math::`` become code blocks, and ``#:`` comments above a constant become its docstring.

* **mkdocs loads it as a hook**: ``on_page_markdown`` points links from the guides to repository
  files that have a page in the site (``../examples/x.py``, ``../configs/x.toml``,
  ``../benchmarks/README.md``) at those pages.

By hand, ``python docs/gen_ref.py publish RUN_DIR`` copies a finished reproduce run folder
(``report.md``, ``metrics.json``, figures) into ``docs/results/<entry>/``; commit it to publish it.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import itertools
import json
import logging
import os
import pkgutil
import re
import shutil
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import griffe

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = "torchnde"

# The solver core, which the lead engineer is restructuring: its docstrings are rendered as written
# (google style) with griffe's warnings off; every other rendered docstring is checked strictly
# (an unknown parameter, a missing type, a malformed section fails the strict build).
CORE = (
    "torchnde._solve",
    "torchnde._loop",
    "torchnde._problem",
    "torchnde._solution",
    "torchnde._ops",
    "torchnde._run",
    "torchnde.terms",
    "torchnde.controllers",
    "torchnde.solvers",
    "torchnde.adjoints",
    "torchnde.paths",
    "torchnde.events",
)
_LOG = logging.getLogger("mkdocs.plugins.torchnde_docs")  # counted by `mkdocs build --strict`


# ----------------------------------------------------------------------------------------------
# What is public, and where each public name is documented
# ----------------------------------------------------------------------------------------------


def _is_public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def exported(module: str) -> list[str]:
    """The names of ``module.__all__``, or ``[]`` when it has none."""
    return list(getattr(importlib.import_module(module), "__all__", []) or [])


@functools.cache
def public_modules() -> tuple[str, ...]:
    """Every module with a reference page: torchnde, its public packages with an ``__all__``, and
    each public module with an ``__all__`` that its package does not wholly re-export."""
    root = importlib.import_module(PACKAGE)
    found = [PACKAGE]
    for info in pkgutil.walk_packages(root.__path__, PACKAGE + ".", onerror=_raise):
        if not _is_public(info.name) or not exported(info.name):
            continue
        parent = info.name.rsplit(".", 1)[0]
        if info.ispkg or not set(exported(info.name)) <= set(exported(parent)):
            found.append(info.name)
    return tuple(found)


def _raise(name: str) -> None:
    raise ImportError(f"importing {name} failed while listing torchnde's public modules")


def _defining_module(obj: object) -> str | None:
    module = getattr(obj, "__module__", None)
    if isinstance(obj, types.ModuleType) or not isinstance(module, str):
        return None
    return module


def _is_documentable(obj: object) -> bool:
    """Classes and functions carry their module; data (constants) is documented where exported."""
    return _defining_module(obj) is not None


@functools.cache
def homes() -> dict[tuple[str, str], str]:
    """``(module, name) -> identifier``: where each exported name is rendered.

    A class or function is rendered on the page of the module that exports it and holds its
    definition most closely (``torchnde.solvers`` for ``torchnde.solvers._dopri5.Dopri5``, not
    ``torchnde``); a constant on the page of each module that exports it; a submodule is its own
    page."""
    modules = public_modules()
    by_object: dict[int, list[str]] = {}
    for module in modules:
        mod = importlib.import_module(module)
        for name in exported(module):
            obj = getattr(mod, name)
            if _is_documentable(obj):
                by_object.setdefault(id(obj), []).append(module)
    result = {}
    for module in modules:
        mod = importlib.import_module(module)
        for name in exported(module):
            obj = getattr(mod, name)
            if isinstance(obj, types.ModuleType):
                result[module, name] = obj.__name__
            elif _is_documentable(obj):
                home = _closest(by_object[id(obj)], _defining_module(obj))
                result[module, name] = f"{home}.{name}"
            else:
                result[module, name] = f"{module}.{name}"
    return result


def _closest(candidates: list[str], defined_in: str) -> str:
    def shared(module: str) -> int:
        a, b = module.split("."), defined_in.split(".")
        return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))

    return max(candidates, key=lambda module: (shared(module), -candidates.index(module)))


@functools.cache
def _identifier_of_object() -> dict[int, str]:
    found = {}
    for (module, name), home in homes().items():
        obj = getattr(importlib.import_module(module), name)
        own_name = name == getattr(obj, "__name__", None)  # not a second name for it
        at_home = _is_documentable(obj) and home == f"{module}.{name}"
        if at_home and (id(obj) not in found or own_name):
            found[id(obj)] = home
    return found


def page_path(module: str) -> str:
    return f"api/{module}.md"


# ----------------------------------------------------------------------------------------------
# Sphinx markup -> Markdown
# ----------------------------------------------------------------------------------------------

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):`([^`]+)`")


def _walk(path: str) -> list[tuple[str, object]] | None:
    """The objects along a dotted path (its longest importable module, then attributes)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if not name.isidentifier() and not all(p.isidentifier() for p in parts[:i]):
            return None
        try:
            obj: object = importlib.import_module(name)
        except ImportError:
            continue
        chain = [(name, obj)]
        for part in parts[i:]:
            try:
                obj = inspect.getattr_static(obj, part)
            except AttributeError:
                return None
            chain.append((part, obj))
        return chain
    return None


def _rendered_member(cls: object, name: str) -> bool:
    """Whether the reference renders ``cls.name`` as its own entry (see the mkdocstrings
    options in ``mkdocs.yml``: public members defined in the class itself, with a docstring)."""
    if name.startswith("_") or not isinstance(cls, type) or name not in vars(cls):
        return False
    member = vars(cls)[name]
    if isinstance(member, property):
        member = member.fget
    if isinstance(member, (classmethod, staticmethod)):
        member = member.__func__
    return inspect.isfunction(member) and bool(member.__doc__)


def _site_identifier(chain: list[tuple[str, object]]) -> str | None:
    identifiers = _identifier_of_object()
    pages = set(public_modules())
    for i in range(len(chain) - 1, -1, -1):
        obj = chain[i][1]
        if isinstance(obj, types.ModuleType):
            return obj.__name__ if obj.__name__ in pages and i == len(chain) - 1 else None
        if id(obj) in identifiers:
            rest = [name for name, _ in chain[i + 1 :]]
            if len(rest) == 1 and _rendered_member(obj, rest[0]):
                return f"{identifiers[id(obj)]}.{rest[0]}"
            return identifiers[id(obj)]
    return None


def resolve(target: str, scope: str) -> str | None:
    """The site identifier of ``target`` as written in a docstring of the object ``scope``
    (a dotted path), or None when it is not documented in the site."""
    target = target.lstrip("~.!")
    scope_parts = scope.split(".")
    candidates = [".".join([*scope_parts[:i], target]) for i in range(len(scope_parts), 0, -1)]
    candidates += [target, f"{PACKAGE}.{target}"]
    for candidate in candidates:
        chain = _walk(candidate)
        if chain is not None:
            identifier = _site_identifier(chain)
            if identifier is not None:
                return identifier
    return None


def convert_roles(text: str, scope: str) -> str:
    """``:class:`~torchnde.Dopri5``` -> ``[`Dopri5`][torchnde.solvers.Dopri5]``; a target the site
    does not document becomes code."""

    def replace(match: re.Match[str]) -> str:
        content = match.group(1)
        titled = re.fullmatch(r"(.*?)\s*<([^>]+)>", content)
        target = titled.group(2) if titled else content
        shown = titled.group(1) if titled else target.lstrip("!.")
        if not titled and shown.startswith("~"):
            shown = shown.lstrip("~").rsplit(".", 1)[-1]
        identifier = resolve(target, scope)
        return f"[`{shown}`][{identifier}]" if identifier else f"`{shown}`"

    return _ROLE.sub(replace, text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _language(block: list[str]) -> str:
    code = "\n".join(block)
    return "python" if re.search(r"\bimport\b|>>>|=|\(", code) else "bash"


_BORDER = re.compile(r"^(\s*)=+(?:\s+=+)+\s*$")


def _cells(row: str, starts: list[int]) -> list[str]:
    """A row of a reST simple table cut at the columns' starts (moved right past text that
    overflows into the gap, which the tables here sometimes do)."""
    cuts = [0]
    for start in starts[1:]:
        cut = max(start, cuts[-1])
        while cut < len(row) and row[cut - 1] != " ":
            cut += 1
        cuts.append(cut)
    cuts.append(max(len(row), cuts[-1]))
    return [row[a:b].strip().replace("|", "\\|") for a, b in itertools.pairwise(cuts)]


def convert_tables(text: str) -> str:
    """reST simple tables (``====  ====`` borders) -> Markdown tables."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        border = _BORDER.match(lines[i])
        if not border:
            out.append(lines[i])
            i += 1
            continue
        starts = [m.start() for m in re.finditer(r"=+", lines[i])]
        segments: list[list[list[str]]] = [[]]
        j = i + 1
        while j < len(lines) and lines[j].strip():
            if _BORDER.match(lines[j]):
                segments.append([])
            else:
                cells = _cells(lines[j], starts)
                rows = segments[-1]
                if rows and not cells[0]:  # a continuation line
                    rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=False)]
                else:
                    rows.append(cells)
            j += 1
        segments = [segment for segment in segments if segment]
        header = segments[0][0] if len(segments) > 1 else [""] * len(starts)
        body = [row for segment in segments[1 if len(segments) > 1 else 0 :] for row in segment]
        pad = border.group(1)
        out.append(pad + "| " + " | ".join(header) + " |")
        out.append(pad + "|" + "---|" * len(starts))
        out += [pad + "| " + " | ".join(row) + " |" for row in body]
        i = j
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def convert_blocks(text: str) -> str:
    """reST literal blocks (a paragraph ending in ``::``) and ``.. math::`` directives -> fenced
    code blocks at the same indentation; simple tables -> Markdown tables."""
    lines = convert_tables(text).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        math = stripped.startswith(".. math::")
        literal = stripped.endswith("::") and not math
        if not (math or literal):
            out.append(line)
            i += 1
            continue
        base = _indent(line)
        block, j = [], i + 1
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
            block.append(lines[j])
            j += 1
        while block and not block[-1].strip():
            block.pop()
            j -= 1
        inline = stripped[len(".. math::") :].strip() if math else ""
        body = [inline] if inline else []
        body += textwrap.dedent("\n".join(block)).strip("\n").splitlines() if block else []
        pad = " " * base
        if literal:
            head = stripped[:-2].rstrip()
            head = head if head.endswith(":") or not head else head + ":"
            if head:
                out += [pad + head, ""]
        if not body:
            i = j
            continue
        language = "text" if math else _language(body)
        out += [f"{pad}```{language}", *[(pad + b) if b.strip() else "" for b in body], pad + "```"]
        i = j
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def comment_docstring(lines: list[str], lineno: int) -> str | None:
    """The ``#:`` comment lines right above line ``lineno`` (1-based), as one docstring."""
    found = []
    i = lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        found.append(lines[i].lstrip()[2:].strip())
        i -= 1
    if not found:
        return None
    text = " ".join(reversed(found))
    return text[:1].upper() + text[1:]


class TorchndeDocstrings(griffe.Extension):
    """Rewrites torchnde's docstrings for the site once the package is loaded (see the module
    docstring), then parses every docstring the site renders, with its own parameter checks: an
    entry may name several parameters (``t0, t1: ...``), each of which must be in the signature
    and typed there. The source files are not touched."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: object) -> None:
        if pkg.name != PACKAGE:
            return
        for obj in _iterate(pkg):
            if obj.is_attribute and obj.docstring is None and obj.lineno:
                text = comment_docstring(obj.module.lines, obj.lineno)
                if text:
                    obj.docstring = griffe.Docstring(text, lineno=obj.lineno, parent=obj)
            if obj.docstring is not None:
                value = convert_blocks(obj.docstring.value)
                obj.docstring.value = convert_roles(value, obj.path)
                obj.docstring.__dict__.pop("parsed", None)
        for obj in rendered_objects(pkg):
            core = _in_core(obj.canonical_path)
            sections = griffe.parse(
                obj.docstring,
                griffe.Parser.google,
                warnings=not core,
                warn_unknown_params=False,
                warn_missing_types=False,
            )
            for problem in check_parameters(obj, sections):
                if not core:
                    _LOG.warning(f"{obj.relative_filepath}:{obj.docstring.lineno}: {problem}")
            obj.docstring.__dict__["parsed"] = sections


def _in_core(path: str) -> bool:
    return any(path == core or path.startswith(core + ".") for core in CORE)


def rendered_objects(pkg: griffe.Module) -> list[griffe.Object]:
    """The griffe objects whose docstrings the reference renders: each page's module, each
    exported class, function or constant at its home, and the public members of those classes."""
    found: dict[str, griffe.Object] = {}

    def add(obj: griffe.Object) -> None:
        if obj.docstring is None or obj.canonical_path in found:
            return
        found[obj.canonical_path] = obj
        if obj.is_class:
            for name, member in obj.members.items():
                if not member.is_alias and not name.startswith("_"):
                    add(member)

    for (module, name), home in homes().items():
        if home != f"{module}.{name}":
            continue
        try:
            target = pkg[home.removeprefix(PACKAGE + ".")]
            add(target.final_target if target.is_alias else target)
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            _LOG.warning(f"the reference cannot find {home} in the sources")
    for module in public_modules():
        add(pkg if module == PACKAGE else pkg[module[len(PACKAGE) + 1 :]])
    return list(found.values())


def _signature(obj: griffe.Object) -> griffe.Parameters | None:
    if obj.is_function or obj.is_class:
        try:
            return obj.parameters
        except (AttributeError, ValueError):
            return None
    return None


def check_parameters(obj: griffe.Object, sections: list[griffe.DocstringSection]) -> list[str]:
    """What is wrong with the parameters a docstring documents: names not in the signature,
    parameters with no type in the signature nor the docstring. An entry ``a, b: ...`` documents
    both (and takes their type when they share it)."""
    signature = _signature(obj)
    if signature is None:
        return []
    by_name = {p.name: p for p in signature}
    takes_kwargs = any(p.kind is griffe.ParameterKind.var_keyword for p in signature)
    problems = []
    for section in sections:
        if section.kind not in (
            griffe.DocstringSectionKind.parameters,
            griffe.DocstringSectionKind.other_parameters,
        ):
            continue
        for entry in section.value:
            names = [n.strip().lstrip("*") for n in entry.name.split(",")]
            known = [by_name[n] for n in names if n in by_name]
            for n in names:
                if n not in by_name and not takes_kwargs:
                    problems.append(f"{obj.path}: parameter '{n}' is not in the signature")
                elif n in by_name and by_name[n].annotation is None and entry.annotation is None:
                    problems.append(f"{obj.path}: parameter '{n}' has no type annotation")
            annotations = {str(p.annotation) for p in known}
            if len(names) > 1 and len(known) == len(names) and len(annotations) == 1:
                entry.annotation = known[0].annotation
    return problems


def _iterate(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _iterate(member)


# ----------------------------------------------------------------------------------------------
# The reference pages
# ----------------------------------------------------------------------------------------------


def _first_sentence(docstring: str | None, fallback: str) -> str:
    text = " ".join((docstring or "").split("\n\n")[0].split())
    text = re.split(r"(?<=[a-z)`])\.\s|:\s|\s\(|;\s", text)[0].strip().rstrip(".:")
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")
    return text or fallback


@dataclass(frozen=True)
class Page:
    path: str
    title: str
    text: str


def reference_page(module: str) -> Page:
    """The page of one public module: its docstring, then each name it is home to, grouped by
    the private module that defines it, then the names it re-exports from elsewhere."""
    mod = importlib.import_module(module)
    own: dict[str, list[tuple[int, str]]] = {}
    elsewhere: list[tuple[str, str]] = []
    submodules: list[str] = []
    for name in exported(module):
        obj, home = getattr(mod, name), homes()[module, name]
        if isinstance(obj, types.ModuleType):
            submodules.append(obj.__name__)
        elif home != f"{module}.{name}":
            elsewhere.append((name, home))
        else:
            group = _defining_module(obj) or ""
            own.setdefault(group, []).append((_line(obj), name))
    lines = [f"::: {module}", "    options:", "      members: false", "      heading_level: 1", ""]
    if submodules:
        lines += ["## Modules", "", "| module | |", "|---|---|"]
        for sub in submodules:
            summary = _first_sentence(importlib.import_module(sub).__doc__, "")
            lines.append(f"| [`{sub}`]({sub}.md) | {summary} |")
        lines.append("")
    for group in sorted(own, key=lambda g: (g == "", _group_order(module, g))):
        names = [name for _, name in sorted(own[group])]
        if len(names) == 1 and group:  # one object: its own heading is the section's
            lines += [f"::: {module}.{names[0]}", "    options:", "      heading_level: 2", ""]
            continue
        if group == module:  # defined in the page's own module: no section of its own
            lines += [
                f"::: {module}.{name}\n    options:\n      heading_level: 2\n" for name in names
            ]
            continue
        title = _first_sentence(importlib.import_module(group).__doc__, group) if group else None
        lines += [f"## {title or 'Constants'}", ""]
        lines += [line for name in names for line in (f"::: {module}.{name}", "")]
    if elsewhere:
        lines += ["## Also exported here", "", "| name | documented at |", "|---|---|"]
        for name, home in sorted(elsewhere):
            lines.append(f"| `{module}.{name}` | [`{home}`][{home}] |")
        lines.append("")
    return Page(page_path(module), module, "\n".join(lines))


def _line(obj: object) -> int:
    """Where ``obj`` is defined in its module, as the order of the module's namespace."""
    module = sys.modules.get(_defining_module(obj) or "")
    names = list(vars(module)) if module else []
    name = getattr(obj, "__name__", None)
    return names.index(name) if name in names else len(names)


# The top-level page opens with solve and what it returns; other pages follow their imports.
_FIRST = ("torchnde._solve", "torchnde._solution", "torchnde._saveat")


def _group_order(package: str, group: str) -> tuple[int, int]:
    """Sections of a page in the order the package's ``__init__`` imports their modules."""
    if group in _FIRST:
        return (0, _FIRST.index(group))
    init = importlib.import_module(package).__file__ or ""
    order = []
    for node in ast.parse(Path(init).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            base = package if node.level == 1 else package.rsplit(".", node.level - 1)[0]
            order.append(f"{base}.{node.module}" if node.level else node.module)
    prefixes = [i for i, name in enumerate(order) if group == name or group.startswith(name + ".")]
    return (1, prefixes[0] if prefixes else len(order))


def reference_pages() -> list[Page]:
    return [reference_page(module) for module in public_modules()]


def reference_summary(pages: list[Page]) -> str:
    """The reference's navigation (mkdocs-literate-nav), one entry per module page."""
    return "".join(f"* [{page.title}]({Path(page.path).name})\n" for page in pages)


# ----------------------------------------------------------------------------------------------
# Examples, configs, benchmarks, reproduce results
# ----------------------------------------------------------------------------------------------


def _split_docstring(source: str) -> tuple[str, str]:
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree) or ""
    first = tree.body[0] if tree.body else None
    if docstring and isinstance(first, ast.Expr):
        code = "\n".join(source.splitlines()[first.end_lineno :]).lstrip("\n")
    else:
        code = source
    return docstring, code


def example_page(path: Path) -> Page:
    docstring, code = _split_docstring(path.read_text(encoding="utf-8"))
    title, _, body = docstring.partition("\n")
    title = title.strip().rstrip(".") or path.stem
    module = f"examples.{path.stem}"
    lines = [f"# {title}", "", convert_roles(convert_blocks(textwrap.dedent(body)), module), ""]
    command = f"python examples/{path.name}"
    lines += ["## Run it", "", "```bash", command]
    if "--quick" in code:
        lines.append(f"{command} --quick    # seconds: checks the machinery")
    lines += ["```", "", f"## The script: `examples/{path.name}`", "", "```python", code, "```"]
    return Page(f"examples/{path.stem}.md", title, "\n".join(lines) + "\n")


def example_pages() -> list[Page]:
    return [example_page(p) for p in sorted((ROOT / "examples").glob("*.py"))]


def config_pages() -> list[Page]:
    pages = []
    for path in sorted((ROOT / "configs").glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        lines = [
            f"# `configs/{path.name}`",
            "",
            f"Run it with `torchnde run configs/{path.name}` (see the [discovery guide]"
            "(../discovery.md) for every key).",
            "",
            "```toml",
            text.rstrip("\n"),
            "```",
        ]
        pages.append(Page(f"configs/{path.stem}.md", path.name, "\n".join(lines) + "\n"))
    return pages


def index_page(title: str, intro: str, pages: list[Page]) -> str:
    lines = [f"# {title}", "", intro, ""]
    lines += [
        f"- [`{Path(page.path).stem}`]({Path(page.path).name}): {page.title}" for page in pages
    ]
    return "\n".join(lines) + "\n"


_LINK = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?(\))")


def _site_target(target: Path) -> str | None:
    """The site page (path relative to docs/) for a repository file, if it has one."""
    try:  # normpath, not resolve: configs/ is a link into the package
        rel = Path(os.path.normpath(target)).relative_to(ROOT).as_posix()
    except ValueError:
        return None
    if rel == "README.md":
        return "index.md"
    if rel == "benchmarks/README.md":
        return "benchmarks.md"
    if rel.startswith("docs/"):
        return rel[len("docs/") :]
    for folder, suffix in (("examples/", ".py"), ("configs/", ".toml")):
        if rel.startswith(folder) and rel.endswith(suffix) and "/" not in rel[len(folder) :]:
            return f"{folder}{rel[len(folder) : -len(suffix)]}.md"
    return None


def rewrite_links(markdown: str, source_dir: Path, page: str) -> str:
    """Relative links of a Markdown file in ``source_dir`` (a repository folder) to files that
    have a site page, rewritten relative to the site page ``page`` (a path under docs/)."""

    def replace(match: re.Match[str]) -> str:
        target = match.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith("/"):
            return match.group(0)
        site = _site_target(source_dir / target)
        if site is None:
            return match.group(0)
        depth = page.count("/")
        relative = "../" * depth + site
        return f"{match.group(1)}{relative}{match.group(3) or ''}{match.group(4)}"

    return _LINK.sub(replace, markdown)


def benchmarks_page() -> Page:
    text = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    text = rewrite_links(text, ROOT / "benchmarks", "benchmarks.md")
    note = (
        "\n\n!!! note\n    This page is `benchmarks/README.md`; the code is in `benchmarks/`, "
        "run with `make bench` or `python -m benchmarks.run`.\n"
    )
    first, _, rest = text.partition("\n")
    return Page("benchmarks.md", "Benchmarks", first + note + rest)


def published_runs() -> dict[str, Path]:
    """``entry name -> docs/results/<entry>/`` for each published run folder."""
    folder = DOCS / "results"
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if (p / "report.md").is_file()}


def results_page() -> Page:
    from torchnde import reproduce

    published = published_runs()
    lines = [
        "# Reproduce results",
        "",
        "`torchnde reproduce NAME` re-runs an experiment of the source material and writes a run "
        "folder with `report.md` (the paper's figure beside ours, the success criterion HELD or "
        "NOT HELD), `metrics.json` and the figures; see the [guide](../reproduce.md). Below, every "
        "registered entry, with the report of its published run where one is committed.",
        "",
        "## Publishing a run",
        "",
        "Run folders live under `runs/` (not committed). To put one in the site:",
        "",
        "```bash",
        "torchnde reproduce NAME                  # the full run: >= 3 seeds",
        "python docs/gen_ref.py publish runs/reproduce-NAME-<time>",
        "git add docs/results/NAME && make docs   # commit it: the site shows the report",
        "```",
        "",
        "`publish` refuses an incomplete folder (it checks it with "
        "[`verify_run_folder`][torchnde.reproduce.verify_run_folder]) and copies `report.md`, "
        "`metrics.json` and the figures; the next build shows the report here.",
        "",
        "## Entries",
        "",
        "| entry | title | published run |",
        "|---|---|---|",
    ]
    names = list(reproduce.entries())
    for name in names:
        entry = reproduce.get(name)
        run = f"[report]({name}/report.md)" if name in published else "none yet"
        lines.append(f"| [`{name}`](#{_anchor(name)}) | {entry.title} | {run} |")
    lines.append("")
    for name in names:
        entry = reproduce.get(name)
        module = importlib.import_module(entry.run.__module__)
        lines += [
            f"### {name}",
            "",
            f"**{entry.title}**",
            "",
            f"- **paper**: {entry.paper}",
            f"- **the paper reports**: {entry.paper_result}",
            f"- **our data**: {entry.data}",
            f"- **criterion**: {entry.criterion}",
            f"- **run**: `torchnde reproduce {name}` ({entry.seeds} seeds; `--quick`: "
            f"{entry.quick_seeds}); source `src/{module.__name__.replace('.', '/')}.py`",
        ]
        if name in published:
            lines.append(f"- **published run**: [report]({name}/report.md)")
        lines.append("")
        doc = inspect.getdoc(module)
        if doc:
            body = convert_roles(convert_blocks(doc), module.__name__)
            lines += ['??? info "The entry\'s notes"', "", textwrap.indent(body, "    "), ""]
    return Page("results/index.md", "Reproduce results", "\n".join(lines) + "\n")


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", name.lower())


def results_summary() -> str:
    lines = ["* [Overview](index.md)"]
    for name in published_runs():
        lines.append(f"* [{name}]({name}/report.md)")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Entry points: mkdocs-gen-files, the mkdocs hook, and the command line
# ----------------------------------------------------------------------------------------------


def generate() -> None:
    """Write every generated page into the build (mkdocs-gen-files)."""
    import mkdocs_gen_files

    def write(path: str, text: str, edit: str | None = None) -> None:
        with mkdocs_gen_files.open(path, "w") as handle:
            handle.write(text)
        if edit:
            mkdocs_gen_files.set_edit_path(path, edit)

    pages = reference_pages()
    for page in pages:
        write(page.path, page.text)
    write("api/SUMMARY.md", reference_summary(pages))

    examples = example_pages()
    for page in examples:
        write(page.path, page.text)
    intro = "Runnable scripts, each with a `--quick` mode that runs in seconds."
    write("examples/index.md", index_page("Examples", intro, examples))
    summary = ["* [Overview](index.md)"]
    summary += [f"* [{Path(p.path).stem}]({Path(p.path).name})" for p in examples]
    write("examples/SUMMARY.md", "\n".join(summary) + "\n")

    configs = config_pages()
    for page in configs:
        write(page.path, page.text)
    intro = "The configs shipped with `torchnde run` (list them with `torchnde configs`)."
    write("configs/index.md", index_page("Configs", intro, configs))
    summary = ["* [Overview](index.md)"] + [f"* [{p.title}]({Path(p.path).name})" for p in configs]
    write("configs/SUMMARY.md", "\n".join(summary) + "\n")

    bench = benchmarks_page()
    write(bench.path, bench.text)
    results = results_page()
    write(results.path, results.text)
    write("results/SUMMARY.md", results_summary())


def on_page_markdown(markdown: str, page: object, **kwargs: object) -> str:
    """mkdocs hook: links from a guide in docs/ to repository files that have a site page."""
    src = page.file.src_uri  # type: ignore[attr-defined]
    if getattr(page.file, "generated_by", None):  # type: ignore[attr-defined]
        return markdown
    return rewrite_links(markdown, (DOCS / src).parent, src)


def publish(run_dir: Path, *, allow_quick: bool = False) -> Path:
    """Copy a complete reproduce run folder into ``docs/results/<entry>/``."""
    from torchnde import reproduce

    problems = reproduce.verify_run_folder(run_dir)
    if problems:
        raise SystemExit(f"{run_dir} is not a complete run folder: " + "; ".join(problems))
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    name = metrics.get("entry")
    if name not in reproduce.entries():
        raise SystemExit(f"{run_dir}/metrics.json names no registered entry (found {name!r})")
    if metrics.get("quick") and not allow_quick:
        raise SystemExit(
            f"{run_dir} is a --quick run, whose numbers do not test the paper's claim; publish a "
            f"full run (`torchnde reproduce {name}`), or pass --allow-quick"
        )
    target = DOCS / "results" / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    files = ["report.md", "metrics.json", "log.txt", *metrics.get("figures", [])]
    for file in files:
        if (run_dir / file).is_file():
            shutil.copy2(run_dir / file, target / file)
    return target


def main(argv: list[str]) -> None:
    allow_quick = "--allow-quick" in argv
    argv = [a for a in argv if a != "--allow-quick"]
    if len(argv) != 2 or argv[0] != "publish":
        raise SystemExit("usage: python docs/gen_ref.py publish RUN_DIR [--allow-quick]")
    target = publish(Path(argv[1]), allow_quick=allow_quick)
    print(f"published into {target}; commit it and run `make docs`")


if __name__ == "<run_path>":  # run by mkdocs-gen-files
    generate()
elif __name__ == "__main__":
    main(sys.argv[1:])
