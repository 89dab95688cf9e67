"""`python -m unsplit_tf.cli VERB ...`: the `unsplit-tf` command without installing its entry point."""

import sys

from unsplit_tf.cli.main import main

sys.exit(main())
