"""A student's Python file as Python reads it (a helper module, shared by submit.py and the
grader): the bytes decoded by the interpreter's own rules (CR and CRLF line ends read as LF;
then importlib.util.decode_source: a UTF-8 byte-order mark, a PEP 263 coding line on line 1
or 2, else UTF-8), so that what an editor saves and Python runs is what is read here.

A file Python itself could not read is refused with one line saying why and what to do.
"""

import codecs
import importlib.util
import io
import re
import tokenize

from plumbing.errors import UserError

MAX_FILE_BYTES = 1 << 20  # the largest student file the grader reads (submit.py says so before)
# PEP 263: a comment on line 1 or 2 naming the encoding (the interpreter's own pattern).
CODING_LINE = re.compile(r"^([ \t\f]*#.*?coding[:=][ \t]*)([-\w.]+)", re.ASCII)
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class SourceError(UserError):
    """A file Python cannot read as source; the message names it and says why."""


def decode_source(data, name):
    """The text of a Python file's bytes `data`, as the interpreter decodes it; SourceError
    (one line naming `name`) where the interpreter would refuse it."""
    if data.startswith(UTF16_BOMS):
        raise SourceError(f"{name} is saved as UTF-16 (it starts with a UTF-16 byte-order mark), which Python "
                          "cannot run: save it as UTF-8")
    # Line ends first, as the interpreter's tokenizer reads them (a coding line in a file of
    # CR line ends counts for it, not for tokenize): CR and CRLF are LF in every encoding
    # Python accepts for source, all of which keep ASCII's bytes.
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    try:
        return importlib.util.decode_source(data)
    except (SyntaxError, UnicodeDecodeError):
        text = _utf8_but_comments(data)
        if text is not None:
            return text
    try:
        return importlib.util.decode_source(data)  # again, for its verdict
    except LookupError as e:  # a coding line naming a codec Python lacks, on some versions
        raise SourceError(f"{name}: its coding line names an encoding Python does not know ({e})") from None
    except SyntaxError as e:  # tokenize.detect_encoding's verdicts
        raise SourceError(_why(data, name, str(e.msg if hasattr(e, "msg") else e))) from None
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise SourceError(f"{name}: byte 0x{data[e.start]:02x} at line {line} is not {e.encoding} text, the "
                          "encoding its coding line names: save it as UTF-8 (or name its real encoding)") from None


def _utf8_but_comments(data):
    """The text of UTF-8 source whose only bytes that are not UTF-8 are in comments, those
    bytes read as U+FFFD; else None. The interpreter imports such a file (its tokenizer
    never decodes a comment), so an honest file saved by an editor in a local encoding, with
    an accent in a comment only, runs for the student and is read here."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    for line in data.split(b"\n", 2)[:2]:
        match = CODING_LINE.match(line.decode("latin-1"))
        if match and codecs_name(match.group(2)) != "utf-8":
            return None
    text = data.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    bad = {(number, column) for number, line in enumerate(lines, start=1) for column, char in enumerate(line)
           if "\udc80" <= char <= "\udcff"}
    try:
        comments = [token for token in tokenize.generate_tokens(io.StringIO(text).readline)
                    if token.type == tokenize.COMMENT]
    except (SyntaxError, tokenize.TokenError):
        return None
    inside = {(number, column) for token in comments for number, column in bad
              if token.start[0] == number and token.start[1] <= column < token.end[1]}
    if inside != bad:
        return None
    return "\n".join("".join("\ufffd" if "\udc80" <= c <= "\udcff" else c for c in line) for line in lines)


def codecs_name(encoding):
    """The codec's own name of `encoding` ('utf8' -> 'utf-8'), or the name as given."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return encoding


def _why(data, name, message):
    """A student's words for detect_encoding's SyntaxError `message`."""
    if message.startswith("unknown encoding"):
        return f"{name}: its coding line names an encoding Python does not know ({message[18:].strip()})"
    if message.startswith("encoding problem"):
        return (f"{name}: it starts with a UTF-8 byte-order mark but its coding line names another encoding "
                f"({message})")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        return (f"{name} is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}) and has no coding line "
                "naming its encoding: save it as UTF-8, or name its encoding on line 1 or 2 as Python asks "
                "(e.g. '# -*- coding: latin-1 -*-')")
    return f"{name}: Python cannot read its encoding ({message})"


def as_utf8(text):
    """`text` (decoded source) to be saved as UTF-8 and read by Python as the same text: a
    coding line naming another encoding is made to name utf-8 (nothing else changes, so
    every line keeps its number)."""
    lines = text.split("\n", 2)
    for i, line in enumerate(lines[:2]):
        match = CODING_LINE.match(line)
        if match:
            lines[i] = match.group(1) + "utf-8" + line[match.end():]
            break
        if line.strip() and not line.lstrip().startswith("#"):
            break  # PEP 263: line 2 counts only after a comment or blank line 1
    return "\n".join(lines)
