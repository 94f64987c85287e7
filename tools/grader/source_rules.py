"""What the grader reads in a student's source before running it (staff only): which code the
student wrote, which piece runs it, the loops in it and method 2's other ways to convolve.

- The student's code is the file's difference from the blank handout (difflib, line by line,
  trailing blanks and line ends ignored): a construct is the student's when one of its lines is.
- A piece runs its method and every function, method or class of the file whose name that
  code mentions (a class: all its methods), and so on. Code that runs without a piece naming
  it (module level, class bodies, decorators, the methods of the layer classes that the kit
  calls: dunders, CamelCase, the handout's) and what it names counts for every piece of the
  file; a function nothing names never runs and counts for none. Names are
  matched as names (a string naming one counts), so this errs on the side of "runs".
- A loop is any Python-level iteration ("DO NOT write loops"): `for`, `while`, the
  comprehensions; what iterates for you (`map`, `filter`, `functools.reduce`, `itertools`,
  `zip`, `enumerate`, `iter(f, sentinel)`, `sum`/`min`/`max`/`any`/`all`/`sorted` over an
  iterable, numpy's `vectorize`, `frompyfunc`, `apply_along_axis`, `apply_over_axes`,
  `nditer`, `ndindex`, `ndenumerate`, `fromiter`); code run from text (`exec`, `eval`,
  `compile`); recursion (a cycle of the file's functions); a class of the file that can be
  iterated (`__iter__`, `__next__`, `__getitem__`); and lookups that could reach any of these
  unseen (`getattr` with a computed name, `__builtins__`, `globals()`, `__import__`,
  `importlib`, `sys.settrace` ...). Numpy's array operations are not loops.
- Method 2's other ways to convolve: the kit's method-1 kernels, numpy's and scipy's
  convolutions and FFTs, `as_strided` and `sliding_window_view`, by their names after
  the file's imports and plain assignments.
"""

import ast
import builtins
import difflib

ITERATION_SYNTAX = {ast.For: "for loop", ast.AsyncFor: "async for loop", ast.While: "while loop",
                    ast.ListComp: "list comprehension", ast.SetComp: "set comprehension",
                    ast.DictComp: "dict comprehension", ast.GeneratorExp: "generator expression"}
# Names (after the file's imports) whose use iterates in Python, and what to call them.
LOOPING = {"map": "map()", "filter": "filter()", "zip": "zip()", "enumerate": "enumerate()",
           "exec": "exec() (code run from text)", "eval": "eval() (code run from text)",
           "compile": "compile() (code run from text)", "functools.reduce": "functools.reduce()"}
LOOPING_NUMPY = ("vectorize", "frompyfunc", "apply_along_axis", "apply_over_axes", "nditer", "ndindex",
                 "ndenumerate", "fromiter")
ITERATING_BUILTINS = ("sum", "min", "max", "any", "all", "sorted")  # with one argument: over an iterable
ITERABLE_METHODS = ("__iter__", "__next__", "__getitem__", "__aiter__", "__anext__")
HIDDEN = {"__builtins__": "__builtins__", "builtins": "the builtins module", "globals": "globals()",
          "vars": "vars()", "locals": "locals()", "__import__": "__import__()", "importlib": "importlib",
          "sys.modules": "sys.modules", "sys.settrace": "sys.settrace", "sys.setprofile": "sys.setprofile",
          "sys._getframe": "sys._getframe", "threading.settrace": "threading.settrace", "gc": "the gc module",
          "inspect": "the inspect module", "operator.attrgetter": "operator.attrgetter",
          "operator.methodcaller": "operator.methodcaller", "types": "the types module"}
HIDDEN_ATTRIBUTES = ("__dict__", "__getattribute__", "__getattr__", "__subclasses__", "__globals__",
                     "__code__", "__class__", "__bases__", "__mro__")
# Method 2's forbidden ways to convolve: a dotted name, or a prefix ending in ".".
OTHER_CONVOLUTIONS = {
    "convolutions.correlate": "convolutions.correlate (method 1)",
    "convolutions.correlate_weight_derivative": "convolutions.correlate_weight_derivative (method 1)",
    "numpy.convolve": "numpy.convolve", "numpy.correlate": "numpy.correlate",
    "numpy.fft.": "numpy.fft", "scipy.fft.": "scipy.fft", "scipy.fftpack.": "scipy.fftpack",
    "scipy.signal.": "scipy.signal", "scipy.ndimage.": "scipy.ndimage",
}
HAND_MADE_IM2COL = ("as_strided", "sliding_window_view")


def student_lines(source, blank):
    """The 1-based numbers of the lines of `source` that are not the blank handout's."""
    # Whitespace aside: a handout line reindented (tabs for spaces, as some editors save) or
    # respaced is still the handout's.
    theirs = [" ".join(line.split()) for line in source.splitlines()]
    ours = [" ".join(line.split()) for line in blank.splitlines()]
    lines = set()
    matcher = difflib.SequenceMatcher(None, ours, theirs, autojunk=False)
    for tag, _, _, first, last in matcher.get_opcodes():
        if tag != "equal":
            lines.update(range(first + 1, last + 1))
    return lines


class Reading:
    """One parsed source and what it holds, for the rules below."""

    def __init__(self, source, blank, pieces):
        self.tree = ast.parse(source)
        self.mine = student_lines(source, blank)
        self.blank_methods = {n.name for n in ast.walk(ast.parse(blank))
                              if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        self.pieces = pieces
        self.aliases = self._aliases()
        self.functions = {}  # name: [FunctionDef or ClassDef] of the file
        self.piece_nodes = {}
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.functions.setdefault(node.name, []).append(node)
        for top in self.tree.body:
            if isinstance(top, ast.ClassDef):
                for item in top.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                            and f"{top.name}.{item.name}" in pieces:
                        self.piece_nodes[f"{top.name}.{item.name}"] = item
        self.owners = self._owners()

    # -- names ------------------------------------------------------------------------

    def _aliases(self):
        """{local name: dotted name} from the file's imports and plain assignments of names."""
        aliases = {}
        for _ in range(2):  # twice: an assignment may come before what it refers to is known
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.asname:
                            aliases[alias.asname] = alias.name
                        else:
                            aliases.setdefault(alias.name.split(".")[0], alias.name.split(".")[0])
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    for alias in node.names:
                        if alias.name != "*":
                            aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                elif isinstance(node, ast.Assign) and len(node.targets) == 1 \
                        and isinstance(node.targets[0], ast.Name) \
                        and isinstance(node.value, (ast.Name, ast.Attribute)):
                    dotted = self.dotted(node.value, aliases)
                    if dotted and dotted != node.targets[0].id:
                        aliases[node.targets[0].id] = dotted
        return aliases

    def dotted(self, node, aliases=None):
        """'numpy.lib.stride_tricks.as_strided' for `np.lib.stride_tricks.as_strided`, after
        the imports; None for anything but names and attributes of names."""
        aliases = self.aliases if aliases is None else aliases
        if isinstance(node, ast.Name):
            return aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value, aliases)
            return f"{base}.{node.attr}" if base else None
        return None

    def references(self, root):
        """Every name and attribute name mentioned under `root`."""
        names = set()
        for node in ast.walk(root):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and not _of_super(node):
                names.add(node.attr)  # super().__init__ is the parent's, not this method again
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                names.add(node.value)  # getattr(self, "helper")
        return names

    # -- who runs what ----------------------------------------------------------------

    def _reach(self, roots):
        """The function and class nodes of the file reached from `roots` by their names."""
        reached, todo = set(), list(roots)
        while todo:
            node = todo.pop()
            for name in self.references(node):
                for target in self.functions.get(name, ()):
                    if id(target) not in reached:
                        reached.add(id(target))
                        todo.append(target)
                        if isinstance(target, ast.ClassDef):  # its methods may be called unnamed (dunders)
                            for item in target.body:
                                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                                    reached.add(id(item))
        return reached

    def _owners(self):
        """{id(function or class node): set of pieces that may run it}."""
        everyone = set(self.pieces)
        owners = {}
        for piece, node in self.piece_nodes.items():
            owners.setdefault(id(node), set()).add(piece)
            for reached in self._reach([node]):
                owners.setdefault(reached, set()).add(piece)
        # What runs without a piece naming it, and so may run in any: module-level code and
        # class bodies (at import), decorators and default values, the other methods of the
        # pieces' classes (the kit and the grader call them), decorated functions; and what
        # they name. A function nothing names never runs.
        others = [n for n in self.tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                   ast.ClassDef))]
        for top in ast.walk(self.tree):
            if isinstance(top, ast.ClassDef):
                others += [n for n in top.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
                others += top.decorator_list + top.bases + [k.value for k in top.keywords]
                if any(item in self.piece_nodes.values() for item in top.body):
                    others += [item for item in top.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                               and item not in self.piece_nodes.values() and self._called_by_the_kit(item.name)]
            elif isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)):
                others += top.decorator_list + top.args.defaults + [d for d in top.args.kw_defaults if d]
                if top.decorator_list:
                    others.append(top)
        for node in others:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                owners[id(node)] = set(everyone)
        for reached in self._reach(others):
            owners[reached] = set(everyone)
        return owners

    def _called_by_the_kit(self, name):
        """Whether a method of a layer class may be called without the file naming it: a
        dunder, the kit's CamelCase API (Initialize, Update ...) or a method of the handout's."""
        return (name.startswith("__") and name.endswith("__")) or name[:1].isupper() or name in self.blank_methods

    def runs(self, node_owner):
        """The pieces that may run code directly inside `node_owner` (a function node; a class
        or None for code that runs at import); none for a function nothing names."""
        if node_owner is None or isinstance(node_owner, ast.ClassDef):
            return set(self.pieces)
        return self.owners.get(id(node_owner), set())

    def walk(self):
        """(node, pieces that may run it) for every node the student wrote."""
        def visit(node, owner, parents):
            span = range(getattr(node, "lineno", 0), (getattr(node, "end_lineno", None) or 0) + 1)
            if hasattr(node, "lineno") and any(line in self.mine for line in span):
                here = node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else owner
                yield node, self.runs(here), parents
            for child in ast.iter_child_nodes(node):
                inner = node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else owner
                yield from visit(child, inner, parents + [node])
        for top in self.tree.body:
            yield from visit(top, None, [])


def _of_super(node):
    """Whether attribute `node` is looked up on super(): `super().name`."""
    value = node.value
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super"


def _is_builtin(reading, name):
    return name in dir(builtins) and reading.aliases.get(name, name) == name


def loops(source, blank, pieces):
    """{piece: [(line, what)]} of every Python-level iteration the student wrote that the piece
    may run, sorted."""
    reading = Reading(source, blank, pieces)
    found = {piece: set() for piece in pieces}

    def hit(line, what, owners):
        for piece in owners:
            found[piece].add((line, what))

    for node, owners, parents in reading.walk():
        kind = ITERATION_SYNTAX.get(type(node))
        if kind:
            hit(node.lineno, kind, owners)
        elif isinstance(node, (ast.Name, ast.Attribute)) and not (parents and isinstance(parents[-1], ast.Attribute)):
            dotted = reading.dotted(node)
            if dotted is None:
                continue
            what = LOOPING.get(dotted) if "." in dotted or _is_builtin(reading, dotted) else None
            if what is None and dotted.startswith("itertools"):
                what = f"{dotted} (itertools)"
            if what is None and dotted.startswith("numpy.") and dotted.rsplit(".", 1)[1] in LOOPING_NUMPY:
                what = f"{dotted}()"
            if what is None and (dotted in HIDDEN or dotted.split(".")[0] in ("importlib", "gc", "inspect")):
                what = f"{HIDDEN.get(dotted, dotted)} (a lookup the loop check cannot see through)"
            if what is None and isinstance(node, ast.Attribute) and node.attr in HIDDEN_ATTRIBUTES:
                what = f"{node.attr} (a lookup the loop check cannot see through)"
            if what:
                hit(node.lineno, what, owners)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and _is_builtin(reading, node.func.id):
            name, args = node.func.id, node.args
            if name in ITERATING_BUILTINS and len(args) == 1 and not node.keywords \
                    and not isinstance(args[0], (ast.Tuple, ast.List, ast.Set)):
                hit(node.lineno, f"{name}() over an iterable", owners)
            elif name == "iter" and len(args) == 2:
                hit(node.lineno, "iter(f, sentinel)", owners)
            elif name in ("getattr", "setattr", "hasattr", "delattr") and len(args) >= 2 \
                    and not isinstance(args[1], ast.Constant):
                hit(node.lineno, f"{name}() with a computed name (a lookup the loop check cannot see through)",
                    owners)
        elif isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            hit(node.lineno, f"from {node.module} import * (names the loop check cannot see)", owners)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in ITERABLE_METHODS:
            hit(node.lineno, f"{node.name} (makes its objects iterable)", owners)
    for line, what, owners in _recursion(reading):
        hit(line, what, owners)
    return {piece: sorted(hits) for piece, hits in found.items()}


def _recursion(reading):
    """(line, what, pieces) of each function of the file that reaches itself by its names, when
    the student wrote a line of the cycle."""
    functions = [n for nodes in reading.functions.values() for n in nodes
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for node in functions:
        calls = {}
        for name in reading.references(node):
            for target in reading.functions.get(name, ()):
                if isinstance(target, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    calls[id(target)] = target
        # Depth-first from node's callees back to node, remembering the path of names.
        path = _path_back(reading, node, list(calls.values()))
        if path is None:
            continue
        cycle = [node, *path]
        if not any(line in reading.mine for f in cycle for line in range(f.lineno, f.end_lineno + 1)):
            continue
        names = " -> ".join(f.name for f in cycle) + f" -> {node.name}"
        what = f"recursion ({node.name} calls itself)" if len(cycle) == 1 else f"recursion ({names})"
        yield node.lineno, what, reading.runs(node)


def _path_back(reading, start, first):
    seen, stack = set(), [(f, []) for f in first]
    while stack:
        node, path = stack.pop()
        if node is start:
            return path
        if id(node) in seen:
            continue
        seen.add(id(node))
        for name in reading.references(node):
            for target in reading.functions.get(name, ()):
                if isinstance(target, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    stack.append((target, path + [node]))
    return None


def other_convolutions(source, blank, pieces):
    """{piece: [(line, what)]} of each way to convolve other than convolve that the student
    wrote in method 2's code of the piece (not its method-1 branch) or in what that code runs."""
    reading = Reading(source, blank, pieces)
    method1 = set()
    for node in reading.piece_nodes.values():
        method1 |= _method1_lines(node)
    found = {piece: set() for piece in pieces}
    for node, owners, parents in reading.walk():
        if getattr(node, "lineno", 0) in method1 or not isinstance(node, (ast.Name, ast.Attribute)) \
                or (parents and isinstance(parents[-1], ast.Attribute)):
            continue
        dotted = reading.dotted(node) or ""
        names = [what for name, what in OTHER_CONVOLUTIONS.items()
                 if dotted == name or (name.endswith(".") and (dotted + ".").startswith(name))]
        if dotted.rsplit(".", 1)[-1] in HAND_MADE_IM2COL:
            names.append(f"{dotted.rsplit('.', 1)[-1]} (a hand-made im2col)")
        for piece in owners:
            found[piece].update((node.lineno, what) for what in names)
    return {piece: sorted(hits) for piece, hits in found.items()}


def _method1_lines(method):
    """The lines of a ConvLayer method's method-1 branch (`if self.conv_method_ == 1:`)."""
    if method is None:
        return set()
    for node in ast.walk(method):
        if isinstance(node, ast.If) and "conv_method_" in ast.unparse(node.test) \
                and isinstance(node.test, ast.Compare) and isinstance(node.test.ops[0], ast.Eq) \
                and isinstance(node.test.comparators[0], ast.Constant) and node.test.comparators[0].value == 1:
            return set(range(node.body[0].lineno, node.body[-1].end_lineno + 1))
    return set()
