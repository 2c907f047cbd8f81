"""The package's shape: imports point one way between the stage packages, rendering imports no
stage, mxnet comes in through one module, and run-dir file names live in the artifacts package only."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vggbench"
# The stage packages and modules (DESIGN: packages by stage, meeting at a run dir's manifest).
STAGES = ("vggbench.train", "vggbench.export", "vggbench.bench", "vggbench.workflows", "vggbench.doctor",
          "vggbench.cli")
# Import rules, package -> packages it must never import (anything below them, at any depth).
FORBIDDEN = {
    "vggbench.platform": STAGES + ("vggbench.runtimes", "vggbench.artifacts"),
    "vggbench.artifacts": STAGES + ("vggbench.runtimes", "vggbench.platform"),
    "vggbench.runtimes": STAGES,
    "vggbench.bench": ("vggbench.train", "vggbench.export", "vggbench.workflows", "vggbench.doctor", "vggbench.cli"),
    "vggbench.export": ("vggbench.train", "vggbench.bench", "vggbench.workflows", "vggbench.doctor", "vggbench.cli"),
    "vggbench.train": ("vggbench.bench", "vggbench.workflows", "vggbench.doctor", "vggbench.cli"),
    "vggbench.bench.report": STAGES[:1] + ("vggbench.export", "vggbench.runtimes", "vggbench.bench.sweep",
                                           "vggbench.bench.worker", "vggbench.bench.timing"),
}


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _modules() -> Dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("vggbench",) + path.relative_to(PACKAGE).with_suffix("").parts)
        modules[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return modules


def _import_graph() -> Dict[str, Set[str]]:
    """module -> the vggbench modules it imports anywhere in the file (lazy imports too)."""
    modules = _modules()
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def _cycle(graph: Dict[str, Set[str]]):
    state: Dict[str, int] = {}
    stack = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if not state.get(nxt):
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node):
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_inside_the_package():
    graph = _import_graph()
    assert len(graph) > 20 and graph["vggbench.cli"]  # the walk really found the modules and their imports
    assert _cycle(graph) is None


def test_the_walk_finds_a_cycle_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_each_package_keeps_its_import_rules():
    graph = _import_graph()
    assert {"vggbench.platform.mxnet", "vggbench.bench.sweep", "vggbench.runtimes.ort_runtime"} <= set(graph)
    broken = sorted(f"{module} imports {target}" for package, banned in FORBIDDEN.items()
                    for module, targets in graph.items() if _inside(module, package)
                    for target in targets for ban in banned if _inside(target, ban) and not _inside(target, package))
    assert broken == []


def test_the_rules_catch_a_forbidden_import():
    graph = {"vggbench.bench.sweep": {"vggbench.train.run"}, "vggbench.train.run": set()}
    broken = [(m, t) for package, banned in FORBIDDEN.items() for m, targets in graph.items()
              if _inside(m, package) for t in targets for ban in banned if _inside(t, ban)]
    assert broken == [("vggbench.bench.sweep", "vggbench.train.run")]


def test_the_bottom_modules_import_nothing_above_them():
    graph = _import_graph()
    assert graph["vggbench.errors"] == set() and graph["vggbench.runtimes.backends"] == set()
    assert graph["vggbench.bench.stats"] <= {"vggbench.errors"}


def test_run_dir_file_names_live_in_artifacts_only():
    literal = re.compile(r"""["'](manifest\.json|model(\.opt|\.int8|\.fp16)?\.onnx|model-symbol\.json|model-0000\.params|"""
                         r"""history\.json|training\.png|last\.json)["']""")
    offenders = [f"{path.relative_to(PACKAGE)}:{number}" for path in PACKAGE.rglob("*.py")
                 if path.parent.name != "artifacts"
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if literal.search(line) and not line.lstrip().startswith("#")]
    assert offenders == []


# Command modules whose output *is* their report: they write to a stream their caller passes (the CLI
# passes sys.stdout) and may fall back to it as ``out or sys.stdout`` for library callers.
STREAM_DEFAULT_MODULES = ("vggbench/doctor.py", "vggbench/bench/pytest_bench.py",
                          "vggbench/train/distributed/launch.py")


def _stdout_writes(path: Path, source: str):
    """Where a module outside ``cli/`` writes to stdout on its own: a ``print()`` without ``file=``, a
    ``file=sys.stdout``, or ``sys.stdout`` anywhere except as ``<stream> or sys.stdout`` in
    :data:`STREAM_DEFAULT_MODULES`. The worker protocol writes to a duplicate of fd 1
    (``os.fdopen(os.dup(1))``) after pointing fd 1 at stderr, so it is not stdout printing."""
    tree = ast.parse(source)
    allowed = set()
    if str(path.relative_to(PACKAGE.parent)) in STREAM_DEFAULT_MODULES:
        allowed = {id(node.values[-1]) for node in ast.walk(tree)
                   if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            if not any(keyword.arg == "file" for keyword in node.keywords):
                found.append(node.lineno)
        elif (isinstance(node, ast.Attribute) and node.attr == "stdout" and isinstance(node.value, ast.Name)
              and node.value.id == "sys" and id(node) not in allowed):
            found.append(node.lineno)
    return sorted(found)


def test_only_the_cli_prints_to_stdout():
    offenders = [f"{path.relative_to(PACKAGE)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
                 if "cli" not in path.relative_to(PACKAGE).parts
                 for line in _stdout_writes(path, path.read_text())]
    assert offenders == [], "use vggbench.messages (say/logger) or take an out stream from the CLI"


def test_the_stdout_rule_catches_prints_and_stdout_writes():
    path = PACKAGE / "bench" / "sweep.py"
    assert _stdout_writes(path, "print('x')\nprint('y', file=log)\nimport sys\nsys.stdout.write('z')\n") == [1, 4]
    assert _stdout_writes(path, "import sys\nprint('x', file=sys.stdout)\nout = out or sys.stdout\n") == [2, 3]
    assert _stdout_writes(PACKAGE / "doctor.py", "import sys\nout = out or sys.stdout\n") == []


def test_the_public_api_resolves_and_import_vggbench_stays_light():
    import subprocess
    import sys

    code = ("import sys, vggbench; assert 'mxnet' not in sys.modules and 'onnxruntime' not in sys.modules; "
            "missing = [n for n in vggbench.__all__ if getattr(vggbench, n, None) is None]; print(missing)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    import vggbench

    assert vggbench.Row.__name__ == "Row" and vggbench.run_train.__name__ == "run_train"
    with pytest.raises(AttributeError, match="no attribute 'Rows'"):
        vggbench.Rows  # noqa: B018
