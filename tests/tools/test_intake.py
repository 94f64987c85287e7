"""The grader's intake (tools/grader/submissions.py): what it reads of a submission, before
anything of it runs. Each class of the rules is tried over its members, generated: symbolic
links (absolute, relative) to every kind of target, in folders and in zips; special files;
sizes, checked before a byte is read; the encodings and line ends an editor saves; a name
that occurs more than once; every kind of zip member. Cheats get '!' and the reason; honest
variants get their text as Python reads it. The graded end of the same classes (15/15 for
the honest ones, 0 for the cheats, through the sandbox) is in test_intake_graded.py."""

import ast
import importlib.util
import itertools
import os
import socket
import stat
import zipfile

import pytest
from autograde_helpers import reference
from conftest import REPO_ROOT

from tools.course import handout
from tools.course.source_text import MAX_FILE_BYTES, as_utf8
from tools.grader import submissions
from tools.grader.submissions import read_submission

NAMES = ("fc_layer.py", "conv_layer.py")


def blank(name):
    return handout.blank_source(reference(name), name)[0]


def half_written(name):
    """The reference with its second piece blank: one piece written."""
    source = reference(name)
    lines = source.splitlines(keepends=True)
    from tools.course.regions import marked_regions

    region = marked_regions(source, name)[1]
    lines[region.first - 1:region.last] = ["        raise NotImplementedError('not yet')\n"]
    return "".join(lines)


def read(path):
    notes = []
    return read_submission(path, notes), notes


def honest_submission(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        (folder / name).write_text(reference(name))
    return folder


# ------------------------------------------------------------------------------------------
# Symbolic links: never followed, refused with the reason, whatever they point to
# ------------------------------------------------------------------------------------------

def _targets(tmp_path):
    """{target kind: path} that a link named like a student file may point to."""
    classmate = honest_submission(tmp_path / "classmate")
    return {"the reference": REPO_ROOT / "fc_layer.py", "a classmate's file": classmate / "fc_layer.py",
            "a folder": classmate, "nothing (dangling)": tmp_path / "gone" / "fc_layer.py",
            "itself (a loop)": None}


@pytest.mark.parametrize("kind", ["absolute", "relative"])
@pytest.mark.parametrize("target", ["the reference", "a classmate's file", "a folder", "nothing (dangling)",
                                    "itself (a loop)"])
@pytest.mark.parametrize("depth", [0, 2])
def test_a_file_that_is_a_link_is_refused_with_the_reason(tmp_path, kind, target, depth):
    folder = tmp_path / "cheat" / os.path.join(*(["a2"] * depth)) if depth else tmp_path / "cheat"
    folder.mkdir(parents=True)
    (folder / "conv_layer.py").write_text(reference("conv_layer.py"))
    link = folder / "fc_layer.py"
    aim = _targets(tmp_path)[target] or link
    os.symlink(aim if kind == "absolute" else os.path.relpath(aim, folder), link)
    found, _ = read(tmp_path / "cheat")
    assert found["fc_layer.py"].startswith("!"), found["fc_layer.py"][:80]
    assert "is a symbolic link (to " in found["fc_layer.py"] and "never through a link" in found["fc_layer.py"]
    assert found["conv_layer.py"] == reference("conv_layer.py")  # the other file is graded as usual


@pytest.mark.parametrize("kind", ["absolute", "relative"])
@pytest.mark.parametrize("target", ["the reference kit", "a classmate's folder"])
@pytest.mark.parametrize("depth", [0, 1])
def test_a_folder_that_is_a_link_on_the_path_is_not_followed(tmp_path, kind, target, depth):
    aim = REPO_ROOT if target == "the reference kit" else honest_submission(tmp_path / "classmate")
    top = tmp_path / "cheat"
    parent = top / "deeper" if depth else top
    parent.mkdir(parents=True)
    os.symlink(aim if kind == "absolute" else os.path.relpath(aim, parent), parent / "a2")
    found, notes = read(top)
    for name in NAMES:
        assert found[name].startswith(f"!no {name} in the submission (not looked into: ")
        assert "a2 (a symbolic link to " in found[name]
    assert any("links are not followed" in n for n in notes)


def test_a_link_beside_the_students_own_file_is_named_and_the_own_file_graded(tmp_path):
    top = honest_submission(tmp_path / "alice" / "work")
    os.symlink(REPO_ROOT / "fc_layer.py", tmp_path / "alice" / "fc_layer.py")  # shallower, and written
    (top / "fc_layer.py").write_text(half_written("fc_layer.py"))
    found, notes = read(tmp_path / "alice")
    assert found["fc_layer.py"] == half_written("fc_layer.py")
    assert any("graded work/fc_layer.py" in n and "fc_layer.py (refused: fc_layer.py is a symbolic link" in n
               for n in notes)


@pytest.mark.parametrize("special", ["FIFO", "socket", "folder"])
def test_a_special_file_named_like_a_student_file_is_not_opened(tmp_path, special):
    top = tmp_path / "odd"
    top.mkdir()
    path = top / "fc_layer.py"
    if special == "FIFO":
        os.mkfifo(path)  # opened for reading without O_NONBLOCK, this would block for ever
    elif special == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    else:
        path.mkdir()
    found, _ = read(top)
    if special == "folder":  # a folder is looked into, not read
        assert found["fc_layer.py"] == "!no fc_layer.py in the submission"
    else:
        assert found["fc_layer.py"] == f"!fc_layer.py is a {special}, not a regular file: not read"


# ------------------------------------------------------------------------------------------
# Sizes: checked before a byte is read
# ------------------------------------------------------------------------------------------

@pytest.fixture
def opened(monkeypatch):
    """The names the intake opens (os.open), recorded."""
    names = []
    real = os.open

    def spy(path, *args, **kwargs):
        names.append(os.path.basename(os.fspath(path)))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(submissions.os, "open", spy)
    return names


@pytest.mark.parametrize("size", [MAX_FILE_BYTES + 1, 6 << 30])
def test_a_file_over_the_bound_is_refused_unread_and_the_other_file_still_read(tmp_path, opened, size):
    top = tmp_path / "big"
    top.mkdir()
    with open(top / "fc_layer.py", "wb") as f:
        f.truncate(size)  # sparse: 6 GB that take no room
    (top / "conv_layer.py").write_text(reference("conv_layer.py"))
    found, _ = read(top)
    assert found["fc_layer.py"].startswith("!fc_layer.py is ") and "a file may be: not read" in found["fc_layer.py"]
    assert "fc_layer.py" not in opened and "conv_layer.py" in opened
    assert found["conv_layer.py"] == reference("conv_layer.py")


def test_a_file_at_the_bound_is_read(tmp_path):
    top = tmp_path / "at"
    top.mkdir()
    text = reference("fc_layer.py")
    (top / "fc_layer.py").write_text(text + "#" * (MAX_FILE_BYTES - len(text.encode()) - 1) + "\n")
    assert not read(top)[0]["fc_layer.py"].startswith("!")


# ------------------------------------------------------------------------------------------
# Encodings and line ends, as editors save them: read as Python reads them
# ------------------------------------------------------------------------------------------

CHARS = {"utf-8": "é→", "latin-1": "é", "cp1252": "€é", "iso-8859-15": "€"}


def _tabs(text):
    out = []
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip(" ")
        out.append("\t" * ((len(line) - len(stripped)) // 4) + " " * ((len(line) - len(stripped)) % 4) + stripped)
    return "".join(out)


def editor_forms():
    """(form id, encoding, function text -> bytes) for every way an editor saves the file:
    an encoding declared or not (BOM, coding line on line 1 or 2, Emacs and Vim forms) times
    line ends (LF, CRLF, CR) times indentation (spaces, tabs)."""
    declarations = {
        "utf-8": ("utf-8", lambda t: t),
        "utf-8 with BOM": ("utf-8-sig", lambda t: t),
        "utf-8 coding line": ("utf-8", lambda t: "# -*- coding: utf-8 -*-\n" + t),
        "latin-1 coding line": ("latin-1", lambda t: "# -*- coding: latin-1 -*-\n" + t),
        "cp1252 on line 2": ("cp1252", lambda t: "#!/usr/bin/env python3\n# coding=cp1252\n" + t),
        "iso-8859-15 vim": ("iso-8859-15", lambda t: "# vim: set fileencoding=iso-8859-15 :\n" + t),
    }
    ends = {"LF": "\n", "CRLF": "\r\n", "CR": "\r"}
    indents = {"spaces": lambda t: t, "tabs": _tabs}
    for (dname, (encoding, declare)), (ename, end), (iname, indent) in itertools.product(
            declarations.items(), ends.items(), indents.items()):
        def to_bytes(text, encoding=encoding, declare=declare, end=end, indent=indent):
            return declare(indent(text)).replace("\n", end).encode(encoding)
        yield f"{dname}, {ename}, {iname}", encoding, to_bytes


def with_check(name, encoding):
    """The reference file `name` with a line a wrong decoding would change: CHECK holds
    characters of `encoding` (an honest student's accented name in a string, say)."""
    chars = CHARS[encoding.replace("-sig", "")]
    return reference(name) + f"\nCHECK = {chars!r}  # {chars}\n", chars


@pytest.mark.parametrize("form", list(editor_forms()), ids=lambda f: f[0])
def test_every_form_an_editor_saves_is_read_as_python_reads_it(tmp_path, form):
    _, encoding, to_bytes = form
    top = tmp_path / "honest"
    top.mkdir()
    expected = {}
    for name in NAMES:
        text, chars = with_check(name, encoding)
        (top / name).write_bytes(to_bytes(text))
        expected[name] = chars
    found, notes = read(top)
    for name in NAMES:
        text = found[name]
        assert not text.startswith("!"), text
        tree = ast.parse(text)
        check = [n.value.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "CHECK"]
        assert check == [expected[name]]
        assert expected[name] in compile((top / name).read_bytes(), name, "exec").co_consts  # as Python reads it
        assert "\r" not in text and "\ufeff" not in text
        # What the sandbox gets is this text saved as UTF-8: Python reads it back unchanged.
        assert importlib.util.decode_source(text.encode("utf-8")) == text
        assert submissions._written(text, name) == 2
    assert notes == []


@pytest.mark.parametrize("data,words", [
    ("x = 1\n".encode("utf-16"), "fc_layer.py is saved as UTF-16"),
    ("x = 'é'\n".encode("latin-1"), "fc_layer.py is not UTF-8 text (byte 0xe9 at line 1) and has no coding line"),
    ("x = 1\ny = 'é'\n".encode("cp1252"), "byte 0xe9 at line 2"),
    (b"# coding: klingon\nx = 1\n", "its coding line names an encoding Python does not know (klingon)"),
    (b"\xef\xbb\xbf# coding: latin-1\nx = 1\n", "starts with a UTF-8 byte-order mark but its coding line"),
    ("# coding: utf-8\nx = 'é'\n".encode("latin-1"), "byte 0xe9 at line 2 is not utf-8 text, the encoding its "
                                                     "coding line names"),
], ids=["utf-16", "latin-1 undeclared", "cp1252 undeclared", "unknown codec", "BOM and another coding line",
        "declared utf-8, saved latin-1"])
def test_a_file_python_cannot_read_is_refused_saying_why_and_what_to_do(tmp_path, data, words):
    top = tmp_path / "bad"
    top.mkdir()
    (top / "fc_layer.py").write_bytes(data)
    found, _ = read(top)
    assert found["fc_layer.py"].startswith("!") and words in found["fc_layer.py"], found["fc_layer.py"]
    with pytest.raises(SyntaxError if b"klingon" not in data else (SyntaxError, LookupError)):
        compile(data, "fc_layer.py", "exec")  # Python refuses it too


def source_variants():
    """(id, bytes) of a small module with a non-ASCII character in every place a student
    puts one, saved in every encoding, declared in every way, with every line end."""
    places = {"comment line 1": "# {c}\nx = 1\n", "comment line 3": "x = 1\ny = 2\n# {c}\n",
              "trailing comment": "x = 1  # {c}\n", "string": "x = '{c}'\n", "docstring": '"""{c}"""\nx = 1\n',
              "identifier": "{c}t\u00e9 = 1\n", "nowhere": "x = 1\n"}
    declarations = {"none": "", "BOM": "\ufeff", "utf-8": "# coding: utf-8\n", "latin-1": "# coding: latin-1\n",
                    "cp1252 on line 2": "#!/usr/bin/env python\n# -*- coding: cp1252 -*-\n"}
    for (place, body), (declared, head), saved, end in itertools.product(
            places.items(), declarations.items(), ("utf-8", "latin-1", "cp1252"), ("\n", "\r\n", "\r")):
        text = (head + body.format(c="é")).replace("\n", end)
        data = text.encode(saved) if not text.startswith("\ufeff") else b"\xef\xbb\xbf" + text[1:].encode(saved)
        yield f"{place}, declared {declared}, saved {saved}, {end!r}", data


def _consts(code):
    return [c if not hasattr(c, "co_consts") else _consts(c) for c in code.co_consts], code.co_names


@pytest.mark.parametrize("variant", list(source_variants()), ids=lambda v: v[0])
def test_a_file_is_read_exactly_when_the_interpreter_reads_it_and_as_it_reads_it(variant):
    from tools.course.source_text import SourceError, decode_source

    _, data = variant
    try:
        expected = _consts(compile(data, "fc_layer.py", "exec"))
    except (SyntaxError, ValueError, LookupError):
        expected = None
    try:
        text = decode_source(data, "fc_layer.py")
        # What the grader then parses (its syntax check) and what the sandbox imports.
        got = _consts(compile(as_utf8(text).encode("utf-8"), "fc_layer.py", "exec"))
    except (SourceError, SyntaxError) as e:
        assert expected is None, f"Python reads it, the grader refused it: {e}"
        return
    assert expected is not None, f"Python refuses it, the grader read {text!r}"
    assert got == expected


def test_as_utf8_renames_only_a_coding_line_python_would_obey():
    assert as_utf8("# -*- coding: latin-1 -*-\nx = 1\n") == "# -*- coding: utf-8 -*-\nx = 1\n"
    assert as_utf8("#!python\n# vim: fileencoding=cp1252\n") == "#!python\n# vim: fileencoding=utf-8\n"
    assert as_utf8("x = 1\n# coding: latin-1\n") == "x = 1\n# coding: latin-1\n"  # line 2 after code: not one
    assert as_utf8("\n\n# coding: latin-1\n") == "\n\n# coding: latin-1\n"  # line 3: not one


# ------------------------------------------------------------------------------------------
# A name that occurs more than once
# ------------------------------------------------------------------------------------------

def layouts():
    """(id, {place: contents}, place graded, words of the note). Contents: "written",
    "half" (one piece written), "blank"; "written2" is written but another text."""
    return [
        ("old blank copy deeper", {"fc_layer.py": "written", "old/fc_layer.py": "blank"}, "fc_layer.py",
         "old/fc_layer.py (blank)"),
        ("old blank copy shallower", {"fc_layer.py": "blank", "a2/fc_layer.py": "written"}, "a2/fc_layer.py",
         "fc_layer.py (blank)"),
        ("handout kit copied whole", {"kit/fc_layer.py": "blank", "mine/a2/fc_layer.py": "written"},
         "mine/a2/fc_layer.py", "kit/fc_layer.py (blank)"),
        ("half written beside whole", {"a/fc_layer.py": "half", "b/c/fc_layer.py": "written"}, "b/c/fc_layer.py",
         "a/fc_layer.py (1 of 2 pieces written)"),
        ("two written: the shallowest", {"x/y/fc_layer.py": "written2", "x/fc_layer.py": "written"},
         "x/fc_layer.py", "x/y/fc_layer.py (all pieces written)"),
        ("identical copies", {"a/fc_layer.py": "written", "b/fc_layer.py": "written"}, "a/fc_layer.py",
         "b/fc_layer.py (the same text)"),
        ("a tie, by path", {"b/fc_layer.py": "written2", "a/fc_layer.py": "written"}, "a/fc_layer.py",
         "b/fc_layer.py (all pieces written, as deep: a tie, broken by path order)"),
        ("a blank loose file and a zip", {"fc_layer.py": "blank", "a2_code.zip:fc_layer.py": "written"},
         "a2_code.zip:fc_layer.py", "fc_layer.py (blank)"),
        ("all blank", {"fc_layer.py": "blank", "a/fc_layer.py": "blank"}, "fc_layer.py",
         "a/fc_layer.py (the same text)"),
    ]


def _contents(kind):
    return {"written": reference("fc_layer.py"), "written2": reference("fc_layer.py") + "# my second try\n",
            "half": half_written("fc_layer.py"), "blank": blank("fc_layer.py")}[kind]


@pytest.mark.parametrize("container,layout", [(container, layout) for container in ("folder", "zip")
                                              for layout in layouts()
                                              if container == "folder" or ":" not in layout[2]],  # no zip in a zip
                         ids=lambda x: x if isinstance(x, str) else x[0])
def test_of_several_copies_the_most_written_then_shallowest_is_graded_and_the_others_named(tmp_path, layout,
                                                                                           container):
    _, files, graded, words = layout
    top = tmp_path / "student"
    top.mkdir()
    zips = {}
    for place, kind in files.items():
        if ":" in place:
            zip_name, member = place.split(":")
            zips.setdefault(zip_name, {})[member] = _contents(kind)
        elif container == "zip":
            zips.setdefault("", {})[place] = _contents(kind)
        else:
            (top / place).parent.mkdir(parents=True, exist_ok=True)
            (top / place).write_text(_contents(kind))
    path = top
    for zip_name, members in zips.items():
        target = tmp_path / "student.zip" if zip_name == "" else top / zip_name
        with zipfile.ZipFile(target, "a" if target.exists() else "w") as archive:
            for member, text in members.items():
                archive.writestr(member, text)
        if zip_name == "":
            path = target
    found, notes = read(path)
    assert found["fc_layer.py"] == _contents(files[graded])
    note = [n for n in notes if n.startswith(f"{len(files)} files named fc_layer.py")]
    assert len(note) == 1 and f"graded {graded} (" in note[0] and words in note[0], notes


# ------------------------------------------------------------------------------------------
# Zips, member by member
# ------------------------------------------------------------------------------------------

def _member(archive, name, data, mode=None, system=3):
    info = zipfile.ZipInfo(name)
    info.create_system = system
    if mode is not None:
        info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def zip_members():
    """(id, how to write fc_layer.py into the zip, None when it must be read, else words of its reason)."""
    ref = reference("fc_layer.py")
    link = stat.S_IFLNK | 0o777
    return [
        ("regular", lambda a: _member(a, "a2/fc_layer.py", ref, stat.S_IFREG | 0o644), None),
        ("no unix mode (made on Windows)", lambda a: _member(a, "a2/fc_layer.py", ref, system=0), None),
        ("backslashes (made on Windows)", lambda a: _member(a, "a2\\fc_layer.py", ref.replace("\n", "\r\n"),
                                                            system=0), None),
        ("macOS attributes beside it", lambda a: (_member(a, "__MACOSX/a2/._fc_layer.py", b"\0\5\26\7"),
                                                  _member(a, "__MACOSX/fc_layer.py", b"\xff\xfe"),
                                                  _member(a, "a2/fc_layer.py", ref)), None),
        ("link to the reference, absolute", lambda a: _member(a, "fc_layer.py", "/autograder/source/fc_layer.py",
                                                             link), "is a symbolic link in the zip (to /autograder"),
        ("link to the reference, relative", lambda a: _member(a, "a2/fc_layer.py", "../../../fc_layer.py", link),
         "is a symbolic link in the zip (to ../../../fc_layer.py)"),
        ("link to a classmate", lambda a: _member(a, "fc_layer.py", "../bob/fc_layer.py", link),
         "is a symbolic link in the zip (to ../bob/fc_layer.py)"),
        ("FIFO", lambda a: _member(a, "fc_layer.py", b"", stat.S_IFIFO | 0o644), "is a FIFO in the zip"),
        ("leaves the folder", lambda a: _member(a, "../../fc_layer.py", ref), "a path in the zip that leaves"),
        ("absolute path", lambda a: _member(a, "/autograder/source/fc_layer.py", ref), "a path in the zip that"),
        ("a 64 MB bomb", lambda a: _member(a, "fc_layer.py", b" " * (64 << 20)),
         "is 64.0 MiB, more than the 1.0 MiB a file may be: not read (the zip's header says so)"),
        ("inside a zip inside the zip", lambda a: _member(a, "inner.zip", _zip_bytes(ref)),
         "inner.zip (a zip inside a zip is not opened)"),
    ]


def _zip_bytes(text):
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fc_layer.py", text)
    return buffer.getvalue()


@pytest.mark.parametrize("member", zip_members(), ids=lambda m: m[0])
@pytest.mark.parametrize("where", ["the submission", "inside the submission folder"])
def test_each_kind_of_zip_member_is_read_or_refused_with_the_reason(tmp_path, member, where):
    _, write, words = member
    path = tmp_path / "hand-in.zip" if where == "the submission" else tmp_path / "alice" / "a2_code.zip"
    path.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        write(archive)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    found, _ = read(path if where == "the submission" else path.parent)
    if words is None:
        assert found["fc_layer.py"] == reference("fc_layer.py")
    else:
        assert found["fc_layer.py"].startswith("!") and words in found["fc_layer.py"], found["fc_layer.py"]
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing extracted, anywhere


def test_an_encrypted_member_is_refused(tmp_path):
    path = tmp_path / "locked.zip"
    with zipfile.ZipFile(path, "w") as archive:
        _member(archive, "fc_layer.py", reference("fc_layer.py"))
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    data[central + 8] |= 0x1  # the central directory's "encrypted" flag
    path.write_bytes(bytes(data))
    assert read(path)[0]["fc_layer.py"] == "!fc_layer.py is encrypted in the zip: not read"


def test_a_member_whose_header_lies_about_its_size_is_cut_at_the_bound(tmp_path):
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w") as archive:
        _member(archive, "fc_layer.py", b"#" * (MAX_FILE_BYTES + 4096))
    data = bytearray(path.read_bytes())
    # The central directory's uncompressed size (offset 24 of its entry) says 100 bytes.
    central = data.rindex(b"PK\x01\x02")
    data[central + 24:central + 28] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    found, _ = read(path)
    assert found["fc_layer.py"].startswith("!fc_layer.py cannot be read from the zip"), found["fc_layer.py"]


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x05\x06\0\0\0\0\x01\0\x01\0\x2e" + b"\0" * 9, b""],
                         ids=["text", "a directory past its end", "empty"])
def test_a_zip_in_a_folder_that_cannot_be_read_is_named_and_the_rest_read(tmp_path, content):
    top = honest_submission(tmp_path / "alice")
    (top / "old.zip").write_bytes(content)
    found, notes = read(top)
    assert found == {name: reference(name) for name in NAMES}
    assert any("old.zip (not a zip that can be read" in n for n in notes)


def test_a_submission_that_is_neither_folder_nor_zip_is_bad_input(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(submissions.SubmissionError, match="not a folder or a zip file"):
        read_submission(tmp_path / "notes.txt")
    with pytest.raises(submissions.SubmissionError, match="no such file or folder"):
        read_submission(tmp_path / "missing")


def test_a_staff_link_to_the_submission_itself_is_followed(tmp_path):
    top = honest_submission(tmp_path / "real" / "alice")
    os.symlink(top, tmp_path / "alice")
    assert read(tmp_path / "alice")[0] == {name: reference(name) for name in NAMES}


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_submission_the_grader_fails_on_costs_only_its_own_grade(tmp_path, jobs):
    """A grader that breaks on one submission (here: a runner that cannot run pieces, which
    only a submission with a usable file reaches) still grades the others and says why."""
    from tools.grader import grading
    from tools.grader.sandbox import Limits

    usable = honest_submission(tmp_path / "usable")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in NAMES:
        (broken / name).write_text("def (:\n")  # nothing of it runs: graded without a runner
    results = grading.grade_all([usable, broken, usable], Limits(), jobs=jobs, runner=object())
    assert [r["student"] for r in results] == ["usable", "broken", "usable-2"]
    for result in (results[0], results[2]):
        failed = "not graded: the grader failed on this submission (AttributeError"
        assert result["total"] == 0 and all(c["reason"].startswith(failed) for c in result["checks"])
    assert all("syntax error at line 1" in c["reason"] for c in results[1]["checks"])


def test_the_search_goes_a_level_at_a_time_so_a_big_repository_hides_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(submissions, "MAX_ENTRIES", 60)
    top = tmp_path / "repo"
    objects = top / ".git" / "objects" / "ab"
    objects.mkdir(parents=True)
    for i in range(100):  # sorted before a2/, and more than the bound
        (objects / f"{i:038x}").write_bytes(b"x")
    honest_submission(top / "a2")
    found, notes = read(top)
    assert found == {name: reference(name) for name in NAMES}
    assert "stopped looking after 60 files and folders" in notes
