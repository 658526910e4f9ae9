"""Reading what a command printed."""


def one_line_error(text: str) -> str:
    """The one line of ``text`` (a command's stderr), after checking that it is one line and no traceback."""
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]
