"""The student's four pieces of the kit, found in a source file: shared by handout.py,
submit.py and autograde.py (a helper module, not a tool).

A piece is the code between a `# BEGIN SOLUTION` and an `# END SOLUTION` comment line,
named after the method around it: FCLayer.ComputeUp and FCLayer.ComputeDown in
fc_layer.py, ConvLayer.ComputeUp and ConvLayer.ComputeDown (method 2) in conv_layer.py.

A file whose markers are gone (a student deleted them) is read with `ast` instead, by this
rule: FCLayer's piece is the whole method body after its docstring; ConvLayer's piece is
the branch of the method's `if` on `conv_method_` that runs for method 2 (the `else` of
`if self.conv_method_ == 1`, or the body of `if self.conv_method_ == 2`), or the whole
body after the docstring when the method has no such `if`.
"""

import ast
import re
import textwrap
from dataclasses import dataclass

from plumbing.errors import UserError

BEGIN = re.compile(r"^\s*#\s*BEGIN SOLUTION\b")
END = re.compile(r"^\s*#\s*END SOLUTION\b")

# The student's files and the pieces each holds, in the handout's order.
PIECES = {
    "fc_layer.py": ("FCLayer.ComputeUp", "FCLayer.ComputeDown"),
    "conv_layer.py": ("ConvLayer.ComputeUp", "ConvLayer.ComputeDown"),
}
ALL_PIECES = tuple(piece for pieces in PIECES.values() for piece in pieces)


class RegionError(UserError):
    """Markers that do not pair up, or a piece that cannot be found; the message names the
    file and the line."""


@dataclass
class Region:
    piece: str      # "Class.Method", or "" when the code around it is not a method of a class
    path: str       # the file, for messages
    first: int      # 1-based number of the region's first line (after the BEGIN marker)
    last: int       # 1-based number of its last line (before the END marker); first - 1 if empty
    lines: list     # the region's lines, without line ends
    how: str        # "markers" or "ast"

    @property
    def text(self):
        """The region's code, dedented, as a student would paste it."""
        return textwrap.dedent("\n".join(self.lines)).strip("\n")

    def describe(self):
        span = f"line {self.first}" if self.first == self.last else f"lines {self.first}-{self.last}"
        return f"{self.piece} ({self.path}, {span}" + (", no markers: found by ast)" if self.how == "ast" else ")")


def _methods(tree):
    """{(class name, method name): FunctionDef} for the methods of top-level classes."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[(node.name, item.name)] = item
    return found


def _enclosing_method(tree, line):
    for (cls, name), node in _methods(tree).items():
        if node.lineno <= line <= node.end_lineno:
            return f"{cls}.{name}"
    return ""


def marked_regions(source, path="<source>"):
    """Every BEGIN/END SOLUTION region of `source`, in order. Raises RegionError when the
    markers do not pair up."""
    lines = source.splitlines()
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError:
        tree = None
    regions, begin = [], None
    for number, line in enumerate(lines, start=1):
        if BEGIN.match(line):
            if begin is not None:
                raise RegionError(f"{path}: line {number}: BEGIN SOLUTION inside the region opened at line {begin}")
            begin = number
        elif END.match(line):
            if begin is None:
                raise RegionError(f"{path}: line {number}: END SOLUTION without a BEGIN SOLUTION before it")
            piece = _enclosing_method(tree, begin) if tree is not None else ""
            regions.append(Region(piece, path, begin + 1, number - 1, lines[begin:number - 1], "markers"))
            begin = None
    if begin is not None:
        raise RegionError(f"{path}: line {begin}: BEGIN SOLUTION without an END SOLUTION after it")
    return regions


def _after_docstring(body):
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:]
    return body


def _method2_branch(method):
    """The statements that run for method 2 in a ConvLayer method, or None."""
    for node in ast.walk(method):
        if isinstance(node, ast.If) and "conv_method_" in ast.unparse(node.test):
            test = node.test
            if isinstance(test, ast.Compare) and len(test.comparators) == 1 \
                    and isinstance(test.comparators[0], ast.Constant):
                equal = isinstance(test.ops[0], ast.Eq)
                unequal = isinstance(test.ops[0], ast.NotEq)
                value = test.comparators[0].value
                if (equal and value == 2) or (unequal and value == 1):
                    return node.body
                if (equal and value == 1) or (unequal and value == 2):
                    return node.orelse or None
    return None


def ast_region(source, piece, path="<source>"):
    """The region of `piece` ("Class.Method") by the module's rule for files without
    markers. Raises RegionError if the file does not parse or has no such method."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as e:
        raise RegionError(f"{path}: line {e.lineno}: syntax error ({e.msg})") from None
    cls, name = piece.split(".")
    method = _methods(tree).get((cls, name))
    if method is None:
        raise RegionError(f"{path}: no method {piece}")
    body = _method2_branch(method) if cls == "ConvLayer" else None
    body = body or _after_docstring(method.body)
    if not body:
        raise RegionError(f"{path}: {piece} has no code")
    first, last = body[0].lineno, body[-1].end_lineno
    lines = source.splitlines()
    return Region(piece, path, first, last, lines[first - 1:last], "ast")


def find_regions(source, path, pieces):
    """{piece: [Region, ...]} for each of `pieces`: the marked regions inside that method,
    or the ast rule's region when it has none. Also returns notes (str) on what fell back
    to ast and why. A piece that cannot be found at all maps to []."""
    notes = []
    try:
        marked = marked_regions(source, path)
    except RegionError as e:
        marked = []
        notes.append(f"{e}; regions located by ast instead")
    found = {}
    for piece in pieces:
        regions = [r for r in marked if r.piece == piece]
        if not regions:
            try:
                regions = [ast_region(source, piece, path)]
                notes.append(f"{path}: no BEGIN/END SOLUTION markers in {piece}; located by ast")
            except RegionError as e:
                notes.append(str(e))
                regions = []
        found[piece] = regions
    return found, notes
