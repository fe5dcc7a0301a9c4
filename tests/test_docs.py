"""The documentation site: every public name is documented and reaches the built site.

The site itself is built by ``make test`` (``mkdocs build --strict``) before pytest runs; it then
sets ``TORCHNDE_DOCS_SITE`` so that the inventory test reads what was just built. Run alone, that
one test is skipped; the others need only the docs tools (``pip install -e '.[docs]'``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import textwrap
import types
import zlib
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe", reason="the docs extra is not installed")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gen_ref() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("gen_ref", ROOT / "docs" / "gen_ref.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_ref"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def package(gen_ref) -> griffe.Module:
    """torchnde as the site sees it: loaded by griffe with the site's extensions."""
    extensions = griffe.load_extensions("dataclasses", gen_ref.TorchndeDocstrings)
    return griffe.load(
        "torchnde",
        search_paths=[str(ROOT / "src")],
        extensions=extensions,
        docstring_parser="google",
    )


def _exported(gen_ref) -> list[tuple[str, str]]:
    return [
        (module, name) for module in gen_ref.public_modules() for name in gen_ref.exported(module)
    ]


def test_the_reference_covers_the_public_packages(gen_ref):
    modules = gen_ref.public_modules()
    for package in ("torchnde", "torchnde.solvers", "torchnde.adjoints", "torchnde.paths"):
        assert package in modules
    for facade in ("torchdiffeq", "torchsde", "torchcde"):
        assert f"torchnde.compat.{facade}" in modules
    # a module its package re-exports wholly has no page of its own
    assert "torchnde.adjoints.backsolve" not in modules
    assert "torchnde.events" not in modules
    assert not [m for m in modules if any(part.startswith("_") for part in m.split("."))]


def test_every_exported_name_is_rendered_once_at_its_home(gen_ref):
    pages = "\n".join(page.text for page in gen_ref.reference_pages())
    homes = gen_ref.homes()
    for module, name in _exported(gen_ref):
        home = homes[module, name]
        if home in gen_ref.public_modules():  # a submodule: its own page
            assert f"::: {home}\n" in pages
            continue
        assert pages.count(f"::: {home}\n") == 1, f"{module}.{name} -> {home}"
    assert homes["torchnde", "Dopri5"] == "torchnde.solvers.Dopri5"
    assert homes["torchnde", "solve"] == "torchnde.solve"


def test_every_exported_name_has_a_docstring(gen_ref, package):
    rendered = {obj.canonical_path: obj for obj in gen_ref.rendered_objects(package)}
    missing = []
    for module, name in _exported(gen_ref):
        obj = package[f"{module}.{name}".removeprefix("torchnde.")]
        target = obj.final_target if obj.is_alias else obj
        if not (target.docstring and target.docstring.value.strip()):
            missing.append(f"{module}.{name}")
        else:
            assert target.canonical_path in rendered
    assert missing == [], f"public names without a docstring: {missing}"


def test_rendered_docstrings_document_real_parameters(gen_ref, package):
    """The strict build's own parameter check, over everything it renders outside the core."""
    problems = []
    for obj in gen_ref.rendered_objects(package):
        if gen_ref._in_core(obj.canonical_path):
            continue
        problems += gen_ref.check_parameters(obj, obj.docstring.parsed)
    assert problems == []


def test_the_parameter_check_catches_a_wrong_name_and_accepts_shared_entries(gen_ref):
    code = textwrap.dedent(
        '''
        def f(t0: float, t1: float, y, **kwargs: int) -> None:
            """Solve.

            Args:
                t0, t1: the interval.
                y: the state.
            """

        def g(a: int) -> None:
            """Add.

            Args:
                b: a typo.
            """
        '''
    )
    module = griffe.visit("m", Path("m.py"), code)
    for function in ("f", "g"):
        module[function].docstring.parser = griffe.Parser.google
    f_problems = gen_ref.check_parameters(module["f"], module["f"].docstring.parsed)
    g_problems = gen_ref.check_parameters(module["g"], module["g"].docstring.parsed)
    assert f_problems == ["m.f: parameter 'y' has no type annotation"]
    assert g_problems == ["m.g: parameter 'b' is not in the signature"]
    entry = module["f"].docstring.parsed[1].value[0]
    assert entry.name == "t0, t1" and str(entry.annotation) == "float"  # the shared type


def test_sphinx_roles_become_links_to_the_reference(gen_ref):
    scope = "torchnde.nn._neural_ode.NeuralODE"
    convert = gen_ref.convert_roles
    assert convert(":class:`Dopri5`", scope) == "[`Dopri5`][torchnde.solvers.Dopri5]"
    assert convert(":func:`~torchnde.solve`", scope) == "[`solve`][torchnde.solve]"
    assert convert(":class:`NeuralODE`", scope) == "[`NeuralODE`][torchnde.nn.NeuralODE]"
    assert convert(":meth:`with_solver`", scope) == (
        "[`with_solver`][torchnde.nn.NeuralODE.with_solver]"
    )
    assert convert(":mod:`torchnde.compat.torchsde`", scope) == (
        "[`torchnde.compat.torchsde`][torchnde.compat.torchsde]"
    )
    # not documented in the site: code, never a link that would break the build
    assert convert(":class:`~pathlib.Path`", scope) == "`Path`"
    assert convert(":func:`_private_helper`", scope) == "`_private_helper`"


def test_literal_and_math_blocks_become_fenced_code(gen_ref):
    text = "Example::\n\n    x = solve(a)\n\nAfter.\n\n.. math:: y_1 = y_0 + f\\,Δt\n"
    assert gen_ref.convert_blocks(text) == (
        "Example:\n\n```python\nx = solve(a)\n```\n\nAfter.\n\n```text\ny_1 = y_0 + f\\,Δt\n```\n"
    )
    table = "Methods:\n\n======  =====\n``a``   ``A``\n        more\n``bb``  ``B``\n======  =====\n"
    assert gen_ref.convert_blocks(table) == (
        "Methods:\n\n|  |  |\n|---|---|\n| ``a`` | ``A`` more |\n| ``bb`` | ``B`` |\n"
    )
    lines = ["x = 1", "#: the bound on", "#: steps", "LIMIT = 3"]
    assert gen_ref.comment_docstring(lines, 4) == "The bound on steps"
    assert gen_ref.comment_docstring(lines, 1) is None


def test_guide_links_to_repository_files_point_at_their_pages(gen_ref):
    docs = ROOT / "docs"
    text = "[a](../examples/spiral_neural_ode.py) [b](../benchmarks/README.md#b1) [c](guide.md)"
    assert gen_ref.rewrite_links(text, docs, "models.md") == (
        "[a](examples/spiral_neural_ode.md) [b](benchmarks.md#b1) [c](guide.md)"
    )


def _inventory(path: Path) -> set[str]:
    lines = path.read_bytes().split(b"\n", 4)
    assert lines[2].startswith(b"# Version"), "not a Sphinx objects.inv"
    body = zlib.decompress(lines[4]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines() if line.strip()}


def test_the_built_site_lists_every_public_name(gen_ref):
    site = os.environ.get("TORCHNDE_DOCS_SITE")
    if not site:
        pytest.skip("no built site: `make test` builds it and sets TORCHNDE_DOCS_SITE")
    inventory = _inventory(Path(site) / "objects.inv")
    missing = [f"{m}.{n}" for m, n in _exported(gen_ref) if f"{m}.{n}" not in inventory]
    missing += [m for m in gen_ref.public_modules() if m not in inventory]
    assert missing == [], f"public names missing from the site: {missing}"
    for page in ("index.html", "examples/index.html", "benchmarks.html", "results/index.html"):
        assert (Path(site) / page).is_file()


def test_the_home_page_example_is_the_readme_example():
    def first_python_block(path: Path) -> str:
        text = path.read_text(encoding="utf-8")
        return text.split("```python\n", 1)[1].split("```", 1)[0]

    readme = first_python_block(ROOT / "README.md")
    assert first_python_block(ROOT / "docs" / "index.md") == readme, (
        "docs/index.md's example drifted from README.md's (tests/test_readme.py runs that one)"
    )


def test_publishing_refuses_an_incomplete_run_folder(gen_ref, tmp_path, monkeypatch):
    monkeypatch.setattr(gen_ref, "DOCS", tmp_path / "docs")
    run = tmp_path / "reproduce-adjoint-check-20250101-000000"
    run.mkdir()
    (run / "metrics.json").write_text('{"entry": "adjoint-check", "quick": false}')
    with pytest.raises(SystemExit, match=r"not a complete run folder.*report\.md"):
        gen_ref.publish(run)
    assert not (tmp_path / "docs").exists()
