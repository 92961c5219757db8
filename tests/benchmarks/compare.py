"""Print the medians of several benchmark runs side by side:
``.venv/bin/python tests/benchmarks/compare.py file.json postgres.json``.

Each file is what ``run.py --json`` wrote; each column is named by the store
that run measured."""

import json
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(TESTS)]  # instead of this file's own folder

from benchmarks.report import format_comparison  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    print(format_comparison([json.loads(Path(p).read_text()) for p in sys.argv[1:]]))
