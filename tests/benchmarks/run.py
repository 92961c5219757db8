"""Run the benchmark suite: ``.venv/bin/python tests/benchmarks/run.py [options]``.

From the repository root; ``--help`` lists the options.  This file only makes
``tests/`` importable (for ``gunicorn_service`` and the ``benchmarks`` package)
and hands over to ``benchmarks.suite``.
"""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(TESTS)]  # instead of this file's own folder

from benchmarks.suite import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
