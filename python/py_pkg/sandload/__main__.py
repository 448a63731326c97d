"""``python -m sandload``: the ``sandload`` command."""

from ._cli import main

if __name__ == "__main__":
    main()
