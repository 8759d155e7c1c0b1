"""``python -m tmpnb.lifecycle report FILE… [--plot DIR]``: the report over lifecycle logs.

Here, not in tmpnb/lifecycle/__init__.py, because the report (tmpnb/report.py) reads its records
with tmpnb.lifecycle: the record stays below the report, and the command on top of both.
"""

import sys

from tmpnb.report import main

if __name__ == "__main__":
    sys.exit(main())
