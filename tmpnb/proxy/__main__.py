"""python -m tmpnb.proxy: the tmpnb-proxy command."""

import sys

from tmpnb.proxy.cli import main

sys.exit(main())
