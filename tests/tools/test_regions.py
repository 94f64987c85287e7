"""tools/course/regions.py: the four solution regions by their markers, by ast when the markers are
gone."""

import ast

import pytest
from conftest import REPO_ROOT

from tools.course.regions import ALL_PIECES, RegionError, ast_region, find_regions, marked_regions

KIT_FILES = {"fc_layer.py": ("FCLayer.ComputeUp", "FCLayer.ComputeDown"),
             "conv_layer.py": ("ConvLayer.ComputeUp", "ConvLayer.ComputeDown")}


def _between_markers(source):
    """The lines between each BEGIN/END SOLUTION pair, by plain scanning."""
    blocks, current = [], None
    for line in source.splitlines():
        if line.strip() == "# BEGIN SOLUTION":
            current = []
        elif line.strip() == "# END SOLUTION":
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return blocks


@pytest.mark.parametrize("name", sorted(KIT_FILES))
def test_the_kit_marks_exactly_its_pieces_and_the_regions_hold_the_lines_between_markers(name):
    source = (REPO_ROOT / name).read_text()
    regions = marked_regions(source, name)
    assert [r.piece for r in regions] == list(KIT_FILES[name])
    assert [r.lines for r in regions] == _between_markers(source)
    for r in regions:
        assert r.how == "markers" and r.lines and r.last - r.first + 1 == len(r.lines)
        ast.parse(r.text)  # each region is whole statements


def test_all_four_pieces_are_named_in_the_handouts_order():
    assert ALL_PIECES == KIT_FILES["fc_layer.py"] + KIT_FILES["conv_layer.py"]


@pytest.mark.parametrize("text,words", [
    ("x = 1\n# END SOLUTION\n", "line 2: END SOLUTION without"),
    ("# BEGIN SOLUTION\nx = 1\n", "line 1: BEGIN SOLUTION without"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n", "line 2: BEGIN SOLUTION inside"),
])
def test_markers_that_do_not_pair_up_are_refused_naming_the_line(text, words):
    with pytest.raises(RegionError, match=words):
        marked_regions(text, "student.py")


def _without_markers(name):
    return "".join(line for line in (REPO_ROOT / name).read_text().splitlines(keepends=True)
                   if "SOLUTION" not in line)


def test_without_markers_an_fc_piece_is_the_method_body_after_its_docstring():
    source = _without_markers("fc_layer.py")
    region = ast_region(source, "FCLayer.ComputeUp", "fc_layer.py")
    method = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef) and n.name == "ComputeUp")
    assert region.how == "ast"
    assert region.first == method.body[1].lineno and region.last == method.end_lineno


def test_without_markers_a_conv_piece_is_the_method_2_branch():
    source = _without_markers("conv_layer.py")
    for piece in KIT_FILES["conv_layer.py"]:
        text = ast_region(source, piece, "conv_layer.py").text
        assert "convolutions.convolve" in text
        assert "im2col" not in text and "col2im" not in text  # method 1 is not the student's


def test_find_regions_falls_back_to_ast_per_piece_and_says_so():
    source = _without_markers("conv_layer.py")
    found, notes = find_regions(source, "conv_layer.py", KIT_FILES["conv_layer.py"])
    assert all(len(found[p]) == 1 and found[p][0].how == "ast" for p in KIT_FILES["conv_layer.py"])
    assert len(notes) == 2 and all("located by ast" in n for n in notes)


def test_find_regions_reports_a_missing_method():
    found, notes = find_regions("class FCLayer:\n    pass\n", "fc_layer.py", KIT_FILES["fc_layer.py"])
    assert found == {"FCLayer.ComputeUp": [], "FCLayer.ComputeDown": []}
    assert any("no method FCLayer.ComputeUp" in n for n in notes)
