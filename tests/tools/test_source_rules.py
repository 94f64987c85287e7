"""tools/grader/source_rules.py: the student's code found against the blank handout, the loops in
it charged to the pieces that run them, and method 2's other ways to convolve; every way to loop
of rule_cases.LOOPS at every place, in every piece, and the honest forms, which show nothing."""

import pytest
from autograde_helpers import reference, with_regions
from rule_cases import HONEST, LOOP_SUPPORT, LOOPS, OTHER_CONVOLUTIONS, PLACES, conv_other_way, fc_with_loop, honest

from tools.course.regions import PIECES, marked_regions
from tools.grader import source_rules
from tools.grader.grading import blank


def _loops(source, name):
    return source_rules.loops(source, blank(name), PIECES[name])


def _named(found, what, word, source):
    """The findings `what` at a line holding `word` that the student wrote."""
    lines = source.splitlines()
    mine = source_rules.student_lines(source, blank("fc_layer.py" if "class FCLayer" in source else "conv_layer.py"))
    return [(line, kind) for line, kind in found if kind.startswith(what) and word in lines[line - 1]
            and line in mine]


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("name", sorted(LOOPS))
def test_every_way_to_loop_is_named_with_its_line_and_charged_to_the_piece_that_runs_it(name, place):
    source = fc_with_loop(name, place)
    found = _loops(source, "fc_layer.py")
    _, what, word = LOOPS[name]
    assert _named(found["FCLayer.ComputeUp"], what, word, source), found
    other = _named(found["FCLayer.ComputeDown"], what, word, source)
    # Code installed at module level may run in any piece; a method's and its helpers' only in it.
    assert bool(other) == (place == "module_level"), found


@pytest.mark.parametrize("piece", [p for pieces in PIECES.values() for p in pieces])
@pytest.mark.parametrize("name", sorted(LOOPS))
def test_every_way_to_loop_is_found_in_each_of_the_four_pieces(name, piece):
    filename = "fc_layer.py" if piece.startswith("FC") else "conv_layer.py"
    methods, before = LOOP_SUPPORT.get(name, ("", ""))
    source = with_regions(filename, {piece: LOOPS[name][0]}, append=methods, prepend=before)
    found = _loops(source, filename)
    _, what, word = LOOPS[name]
    assert _named(found[piece], what, word, source)
    sibling = next(p for p in PIECES[filename] if p != piece)
    assert not _named(found[sibling], what, word, source)


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_forms_show_no_loop_and_no_other_convolution(name):
    fc, conv = honest(name)
    assert _loops(fc, "fc_layer.py") == {"FCLayer.ComputeUp": [], "FCLayer.ComputeDown": []}
    assert _loops(conv, "conv_layer.py") == {"ConvLayer.ComputeUp": [], "ConvLayer.ComputeDown": []}
    assert source_rules.other_convolutions(conv, blank("conv_layer.py"), PIECES["conv_layer.py"]) == {
        "ConvLayer.ComputeUp": [], "ConvLayer.ComputeDown": []}


@pytest.mark.parametrize("name", ["fc_layer.py", "conv_layer.py"])
def test_the_reference_and_the_blank_are_nobodys_code(name):
    for source in (reference(name), blank(name)):
        assert all(found == [] for found in _loops(source, name).values())
    assert source_rules.student_lines(blank(name), blank(name)) == set()
    # The handout's own method-1 calls of correlate are not the student's.
    found = source_rules.other_convolutions(reference("conv_layer.py"), blank("conv_layer.py"), PIECES["conv_layer.py"])
    assert found == {"ConvLayer.ComputeUp": [], "ConvLayer.ComputeDown": []}


@pytest.mark.parametrize("name", sorted(OTHER_CONVOLUTIONS))
def test_other_ways_to_convolve_are_named_where_the_names_show(name):
    source = conv_other_way(name)
    _, expected = OTHER_CONVOLUTIONS[name]
    named = set()
    by_piece = source_rules.other_convolutions(source, blank("conv_layer.py"), PIECES["conv_layer.py"])
    for piece, found in by_piece.items():
        lines = source.splitlines()
        other = [r for r in marked_regions(source, "conv_layer.py") if r.piece != piece][0]
        assert not any(other.first <= line <= other.last for line, _ in found)  # not the other piece's
        assert all(line in source_rules.student_lines(source, blank("conv_layer.py")) and lines[line - 1].strip()
                   for line, _ in found)
        named.update(what for _, what in found)
    assert named == set(expected)  # the decoy's computed names show nothing: the run must catch it


def test_student_lines_ignore_line_ends_and_trailing_blanks():
    source = reference("fc_layer.py")
    mine = source_rules.student_lines(source, blank("fc_layer.py"))
    crlf = source.replace("\n", "  \r\n")
    assert source_rules.student_lines(crlf, blank("fc_layer.py")) == mine
    region_lines = {n for n, line in enumerate(source.splitlines(), 1) if "self.w_.T + self.b_" in line}
    assert region_lines <= mine


@pytest.mark.parametrize("how,charged", [("", set()), ("@staticmethod\n", {"FCLayer.ComputeUp", "FCLayer.ComputeDown"}),
                                         ("_HOOK = _unused\n", {"FCLayer.ComputeUp", "FCLayer.ComputeDown"})])
def test_a_function_nothing_names_never_runs_and_a_named_or_decorated_one_may_run_anywhere(how, charged):
    helper = "def _unused(x):\n    return [v for v in x]\n"
    if how.startswith("@"):
        helper = how + helper
    elif how:
        helper += how
    source = with_regions("fc_layer.py", {}, append="\n\n" + helper)
    found = _loops(source, "fc_layer.py")
    assert {piece for piece, hits in found.items() if hits} == charged


@pytest.mark.parametrize("name", ["fc_layer.py", "conv_layer.py"])
@pytest.mark.parametrize("indent", ["\t", "  ", "        "])
def test_the_reference_reindented_is_nobodys_code_either(name, indent):
    """An editor that saves indentation as tabs (or other widths) makes no handout line the
    student's: no loop is charged for the kit's own code (its `min(size[:2])`), and
    `super().__init__` in `__init__` is not recursion."""
    def reindent(line):
        stripped = line.lstrip(" ")
        return indent * ((len(line) - len(stripped)) // 4) + stripped
    source = "\n".join(reindent(line) for line in reference(name).splitlines())
    compile(source, name, "exec")  # still Python
    assert all(found == [] for found in _loops(source, name).values()), _loops(source, name)
