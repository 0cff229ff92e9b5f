"""`python -m videolt`; also what torchrun runs for multi-GPU training:

    torchrun --nproc_per_node=N -m videolt -- train WORKDIR --features F --run R ...

(the `--` stops torchrun's own parser from reading `--run` as its `--run-path`).
"""

import sys

from videolt.cli import main

sys.exit(main())
