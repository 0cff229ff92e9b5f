"""`python -m videolt` (used by torchrun: `torchrun ... -m videolt train ...`)."""

import sys

from videolt.cli import main

sys.exit(main())
