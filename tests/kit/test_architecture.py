"""docs/architecture.md is the house as it is: every module in its table, with its lines and who imports it.

The table's rows are `| `path` | lines | what it owns | imported by |`; an importer is a path, or
`folder/*` for every module of one folder that imports it. A module added, removed or
moved without the table, an import added or dropped, or a file that grew or shrank by more than
a fifth fails here, naming the file.
"""

import ast
import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "architecture.md"
ROW = re.compile(r"^\| `([^`]+)` \| (\d+) \| .* \|\s*([^|]*?)\s*\|$")
SOURCES = ("*.py", "*.pyx", "*.h")


def project_files():
    """The project's source files outside tests/, as git knows them."""
    try:
        listed = subprocess.run(["git", "ls-files", *SOURCES], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the house's files cannot be listed")
    return sorted(f for f in listed if not f.startswith("tests/") and (REPO_ROOT / f).exists())


def module_name(path):
    name = path.rsplit(".", 1)[0].replace("/", ".")
    return name.removesuffix(".__init__")


def imported_names(node):
    """The module names an import statement names: `from a import b` names a.b when that is a
    module, else a itself."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def importers(files):
    """{file: set of the project's files that import it}. A bare name is also looked up beside the
    importing file (a script's own folder is first on sys.path)."""
    modules = {module_name(f): f for f in files if f.endswith((".py", ".pyx"))}
    found = {f: set() for f in files}
    for f in files:
        if not f.endswith(".py"):
            continue
        folder = module_name(f).rpartition(".")[0]
        for node in ast.walk(ast.parse((REPO_ROOT / f).read_text(encoding="utf-8"))):
            names = imported_names(node)
            if isinstance(node, ast.ImportFrom) and any(name in modules for name in names[1:]):
                names = names[1:]  # `from package import module`: the module, not the package
            for name in names:
                target = modules.get(name) or (modules.get(f"{folder}.{name}") if folder else None)
                if target and target != f:
                    found[target].add(f)
    return found


def documented_rows():
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line.strip())
        if match:
            path, lines, users = match.groups()
            rows[path] = (int(lines), set(re.findall(r"`([^`]+)`", users)))
    return rows


def test_every_module_of_the_house_has_a_row_and_every_row_a_module():
    files, rows = set(project_files()), documented_rows()
    assert not files - set(rows), f"missing from docs/architecture.md: {sorted(files - set(rows))}"
    assert not set(rows) - files, f"in docs/architecture.md but not in the house: {sorted(set(rows) - files)}"


def covers(patterns, importers):
    """True if every importer matches a documented pattern (a path, or `folder/*` for all the
    modules of a folder) and every pattern matches an importer."""
    def matches(pattern, path):
        if pattern.endswith("/*"):
            return fnmatch.fnmatch(path, pattern) and "/" not in path[len(pattern) - 1:]
        return path == pattern

    return (all(any(matches(p, f) for p in patterns) for f in importers)
            and all(any(matches(p, f) for f in importers) for p in patterns))


def test_each_row_gives_who_imports_the_module():
    files, rows = project_files(), documented_rows()
    actual = importers(files)
    wrong = {f: (sorted(rows[f][1]), sorted(actual[f]))
             for f in files if f in rows and not covers(rows[f][1], actual[f])}
    assert not wrong, f"imported by (documented, actual): {wrong}"


def test_each_row_gives_the_module_lines_within_a_fifth():
    rows = documented_rows()
    wrong = {}
    for f, (documented, _) in rows.items():
        path = REPO_ROOT / f
        if path.exists():
            actual = len(path.read_text(encoding="utf-8").splitlines())
            if abs(actual - documented) > max(10, documented // 5):
                wrong[f] = (documented, actual)
    assert not wrong, f"lines (documented, actual): {wrong}"
