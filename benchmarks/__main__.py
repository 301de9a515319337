"""``python -m benchmarks``: see ``python -m benchmarks --help``."""

from benchmarks import main

raise SystemExit(main())
