"""The house holds: every folder imports only the floors below it, and no modules import each
other in a circle (docs/reference/architecture.md draws the same floors)."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

# Top floor first; a module may import its own floor or any floor below.
FLOORS = [
    ("run.py",),
    ("app",),
    ("pipelines",),
    ("steps",),
    ("dcjt/registry",),
    ("dcjt/experiments",),
    ("dcjt/train",),
    ("dcjt/plan.py", "dcjt/config_files.py"),
    ("dcjt/method",),
    ("dcjt/config.py",),
    ("dcjt/synthetic",),
    ("dcjt/data",),
    ("dcjt/serving",),
    ("dcjt/models",),
    ("dcjt/modes.py", "dcjt/schedule.py", "dcjt/selection.py", "dcjt/utils", "dcjt/__init__.py"),
]
PACKAGES = ("app", "pipelines", "steps", "dcjt")


def floor_of(relative: str) -> int:
    for level, places in enumerate(FLOORS):
        if any(relative == p or relative.startswith(p + "/") for p in places):
            return len(FLOORS) - level
    raise AssertionError(f"{relative} is on no floor: add it to FLOORS and to docs/reference/architecture.md")


def module_file(name: str) -> str | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return str(candidate.relative_to(ROOT))
    return None


def project_imports(path: Path) -> set[str]:
    """Files of the project that ``path`` imports (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES and (target := module_file(name)):
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    files = [ROOT / "run.py"] + [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return {str(p.relative_to(ROOT)): project_imports(p) - {str(p.relative_to(ROOT))} for p in files}


def test_every_import_goes_to_the_same_floor_or_below():
    upward = [
        f"{source} (floor {floor_of(source)}) imports {target} (floor {floor_of(target)})"
        for source, targets in graph().items()
        for target in targets
        if floor_of(target) > floor_of(source)
    ]
    assert not upward, upward


def test_no_import_circles():
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join(path[path.index(nxt) :] + [nxt]) if nxt in path else nxt)
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])


def page_floors() -> list[str]:
    """The folders and files the architecture page draws, top first (its first code block)."""
    text = (ROOT / "docs" / "reference" / "architecture.md").read_text()
    block = text.split("```", 2)[1]
    firsts = [line.split()[0] for line in block.splitlines() if line.strip()]
    return [f.rstrip("/") for f in firsts if f.endswith("/") or f.endswith(".py")]


def test_the_architecture_page_draws_the_floors_this_test_enforces():
    """The page and ``FLOORS`` are one plan: every floor is drawn, in this order, and every place
    the page draws lies on a floor (a sub-folder the page names, such as ``app/team``, lies in
    its floor)."""
    drawn = page_floors()
    levels = [floor_of(p if p.endswith(".py") else p + "/x.py") for p in drawn]
    assert levels == sorted(levels, reverse=True), list(zip(drawn, levels))
    places = [p for floor in FLOORS for p in floor if p != "dcjt/__init__.py"]
    missing = [p for p in places if p not in drawn]
    assert not missing, f"docs/reference/architecture.md does not draw {missing}"


MAX_PARAMETERS = 8


def test_no_function_takes_more_than_eight_parameters():
    """Settings travel as objects (a relabel rule, the promotion settings, a challenger, a row's
    scoring, a stage's gates, a study's spec), not as long lists of keywords: no function of the
    application takes more than eight parameters."""
    wide = []
    for pkg in ("dcjt", "steps", "pipelines", "app"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                    names = [a.arg for a in args if a.arg not in ("self", "cls")]
                    if len(names) > MAX_PARAMETERS:
                        wide.append(f"{path.relative_to(ROOT)} {node.name}")
    assert not wide, f"functions over {MAX_PARAMETERS} parameters: {wide}"
