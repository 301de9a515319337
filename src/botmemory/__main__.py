"""``python -m botmemory``: the same as the ``botmemory`` command."""

from botmemory.cli import main

if __name__ == "__main__":
    main()
