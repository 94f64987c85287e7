"""The intake's classes graded end to end, in one run of tools/autograde.py (in the sandbox
when one can be made here, else without): honest submissions in the forms editors, zips and
habits produce get 15/15; submissions that hand in links get 0 on what the links point to,
with the reason; a submission the grader cannot read costs only its own grade. The same
classes member by member, without grading, are in test_intake.py."""

import os
import stat
import zipfile

import pytest
from autograde_helpers import checks_of, reference, run_autograde, sandbox_problem, unsafe_problem
from conftest import REPO_ROOT
from test_intake import _tabs, blank

from tools.grader import points as grader_points

LIMITS = ["--timeout", "20", "--cpu", "10", "--memory", "1024"]
# A line a wrong decoding breaks: the file raises at import unless read in its own encoding.
CHECK = "\nCHECK = 'é'  # é\nassert CHECK == '\\u00e9', 'read in the wrong encoding'\n"


def _save(folder, name, text, encoding="utf-8", end="\n", head=""):
    folder.mkdir(parents=True, exist_ok=True)
    data = (head + text).replace("\n", end)
    (folder / name).write_bytes(data.encode(encoding))  # "utf-8-sig": with a byte-order mark


def _zip(path, members, system=3):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (data, mode) in members.items():
            info = zipfile.ZipInfo(name)
            info.create_system = system
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


def honest(tmp):
    """{student: submission path}: the reference as editors and habits save it."""
    subs = tmp / "subs"
    out = {}
    for name in ("fc_layer.py", "conv_layer.py"):
        text = reference(name) + CHECK
        _save(subs / "bom_crlf", name, text, "utf-8-sig", "\r\n")
        _save(subs / "latin1_coding", name, text, "latin-1", head="# -*- coding: latin-1 -*-\n")
        _save(subs / "cp1252_tabs_cr", name, _tabs(text), "cp1252", "\r",
              head="#!/usr/bin/env python3\n# coding=cp1252\n")
        _save(subs / "ansi_comment", name, reference(name) + "\n# Écrit par Zoé\n", "latin-1")
        _save(subs / "old_copy" / "a2", name, text)
        _save(subs / "old_copy" / "old", name, blank(name))          # an old blank copy, as deep
        _save(subs / "old_copy", name, blank(name))                  # and the handout's, shallower
    _zip(subs / "zip_windows.zip", {f"a2\\{name}": ((reference(name) + CHECK).replace("\n", "\r\n").encode(), 0)
                                    for name in ("fc_layer.py", "conv_layer.py")}, system=0)
    _zip(subs / "zip_in_folder" / "a2_code.zip", {name: ((reference(name) + CHECK).encode(), stat.S_IFREG | 0o644)
                                                  for name in ("fc_layer.py", "conv_layer.py")})
    for path in sorted(subs.iterdir()):
        out[path.stem if path.is_file() else path.name] = path
    return out


def cheats(tmp, classmate):
    """{student: (submission path, words of the reason on every check)}: links, in every form."""
    subs = tmp / "cheats"
    subs.mkdir()
    out = {}
    top = subs / "link_absolute"
    top.mkdir()
    for name in ("fc_layer.py", "conv_layer.py"):
        os.symlink(REPO_ROOT / name, top / name)
    out["link_absolute"] = (top, "is a symbolic link (to ")
    top = subs / "link_relative" / "a2"
    top.mkdir(parents=True)
    for name in ("fc_layer.py", "conv_layer.py"):
        os.symlink(os.path.relpath(REPO_ROOT / name, top), top / name)
    out["link_relative"] = (top.parent, "is a symbolic link (to ../")
    top = subs / "link_classmate"
    top.mkdir()
    for name in ("fc_layer.py", "conv_layer.py"):
        os.symlink(os.path.relpath(classmate / name, top), top / name)
    out["link_classmate"] = (top, "is a symbolic link (to ")
    top = subs / "folder_link"
    top.mkdir()
    os.symlink(REPO_ROOT, top / "a2")
    out["folder_link"] = (top, "in the submission (not looked into: a2 (a symbolic link to ")
    link = stat.S_IFLNK | 0o777
    out["zip_links"] = (_zip(subs / "zip_links.zip", {"fc_layer.py": (b"/autograder/source/fc_layer.py", link),
                                                      "conv_layer.py": (b"../../conv_layer.py", link)}),
                        "is a symbolic link in the zip (to ")
    return out


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("intake")
    good = honest(tmp)
    bad = cheats(tmp, good["latin1_coding"])
    sparse = tmp / "subs_big" / "sparse"
    sparse.mkdir(parents=True)
    with open(sparse / "fc_layer.py", "wb") as f:
        f.truncate(6 << 30)  # 6 GB that take no room: the run must not read them
    (sparse / "conv_layer.py").write_text(reference("conv_layer.py"))
    paths = list(good.values()) + [path for path, _ in bad.values()] + [sparse]
    unsafe = []
    if sandbox_problem():
        if unsafe_problem():
            pytest.skip(f"no sandbox ({sandbox_problem()}), and no grading without one ({unsafe_problem()})")
        unsafe = ["--unsafe-no-sandbox"]
    students, lines, _ = run_autograde(paths, tmp / "grades", "--jobs", "2", *LIMITS, *unsafe)
    return students, good, bad, lines


HONEST = ["bom_crlf", "latin1_coding", "cp1252_tabs_cr", "ansi_comment", "old_copy", "zip_windows", "zip_in_folder"]


@pytest.mark.parametrize("student", HONEST)
def test_honest_forms_get_full_marks(graded, student):
    result = graded[0][student]
    assert result["total"] == grader_points.MAX_POINTS, {k: c["reason"] for k, c in checks_of(result).items()
                                                         if not c["passed"]}


def test_the_old_copies_are_named_in_the_notes(graded):
    notes = graded[0]["old_copy"]["notes"]
    for name in ("fc_layer.py", "conv_layer.py"):
        assert any(n.startswith(f"3 files named {name}") and f"graded a2/{name} (all pieces written)" in n
                   and f"old/{name} (blank)" in n and f"not graded: {name} (blank)" in n for n in notes), notes


@pytest.mark.parametrize("student", ["link_absolute", "link_relative", "link_classmate", "folder_link", "zip_links"])
def test_links_score_nothing_with_the_reason(graded, student):
    result = graded[0][student]
    words = graded[2][student][1]
    assert result["total"] == 0
    for check in result["checks"]:
        assert words in check["reason"], check["reason"]


def test_a_6_gb_file_costs_only_its_own_points_and_the_run_goes_on(graded):
    students, good, bad, lines = graded
    result = students["sparse"]
    for (piece, _), check in checks_of(result).items():
        if piece.startswith("FCLayer"):
            assert check["points"] == 0 and "fc_layer.py is 6.0 GiB, more than the 1.0 MiB" in check["reason"]
    assert result["total"] == 9  # its conv_layer.py is the reference's
    assert len(lines) == len(good) + len(bad) + 2  # a line for each, and the last
