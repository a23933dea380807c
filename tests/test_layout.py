"""The package's shape: three parts whose imports point down only (workbench → models → engine), no import
cycle between modules (imports inside functions counted), old import paths still working, and an
``import nst_lib`` / ``nst --help`` that does not start TensorFlow."""

import ast
import importlib
import subprocess
import sys

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "nst_lib"


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports():
    """{module: {internal modules it imports anywhere in its code}}, relative imports resolved."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                # the longest existing module the import names (a module, or a name defined in one)
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("nst_lib") and t != "nst_lib":
                    deps.add(t)
        graph[name] = deps
    return graph


def _part(module):
    if module.startswith("nst_lib.workbench"):
        return 2
    if module.startswith("nst_lib.models"):
        return 1
    return 0


def test_imports_point_down_only():
    wrong = [(m, d) for m, deps in _imports().items() for d in deps if _part(d) > _part(m)]
    assert not wrong, f"imports that run back up (engine < models < workbench): {wrong}"


def test_no_import_cycle_between_modules():
    graph = _imports()
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in graph.get(m, ()):
            if d.endswith("__init__") or graph.get(d) is None:
                continue
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])
    # a package's __init__ hands names on lazily; only cycles between modules count
    cycles = [c for c in cycles if not any(m in ("nst_lib.models", "nst_lib.workbench") for m in c)]
    assert not cycles, cycles


def test_the_top_level_holds_the_engine_in_at_most_12_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 12, top
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == {"models", "workbench"}


@pytest.mark.parametrize("old", sorted(__import__("nst_lib").MOVED))
def test_old_import_paths_give_the_same_module(old):
    import nst_lib

    assert importlib.import_module(old) is importlib.import_module(nst_lib.MOVED[old])


def test_readme_import_paths_work():
    from nst_lib.astgan import ast_gan  # noqa: F401
    from nst_lib.data import ContentStyleData, from_unit, load_image_folder, tiny_paintings, to_unit  # noqa: F401
    from nst_lib.guidance import GramPrompt, GuidanceConfig, guide  # noqa: F401
    from nst_lib.survey import DeceptionSurvey  # noqa: F401
    from nst_lib.sweeps import sweep  # noqa: F401
    from nst_lib.viz import save_figure  # noqa: F401
    from nst_lib.widgets import StylePanel  # noqa: F401

    from nst_lib.models import DCGAN, VQGAN, VQPrior, load_trained, resume_training, tile, train  # noqa: F401


def test_import_nst_lib_and_the_cli_parser_do_not_start_tensorflow():
    code = (
        "import sys, nst_lib, nst_lib.config; from nst_lib.workbench.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
