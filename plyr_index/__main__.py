"""``python -m plyr_index`` is the same as ``plyr-index``."""

import sys

from plyr_index.cli import main

sys.exit(main())
