"""The ``sandload`` command (``pip install sandload`` puts it on PATH; ``python -m sandload``
runs it too): the Rust binary's command line, run from the extension module, with the same
output, JSON schema and exit statuses (0 accepted, 1 refused, 2 usage, 3 unreadable)."""

from __future__ import annotations

import signal
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> None:
    """Runs ``sandload`` with ``argv`` (default: the process's arguments) and exits with its
    status."""
    from ._sandload import _cli_main

    args = sys.argv[1:] if argv is None else argv
    # Ctrl-C stops a run as it stops the Rust binary (Python's handler would wait for the run).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(_cli_main(["sandload", *args]))


if __name__ == "__main__":
    main()
