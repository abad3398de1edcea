"""`python -m mothray.experiment`: the trainable is mothray.experiment.trainable's, which Ray's
workers import by name."""

import sys

from mothray.experiment.cli import main

sys.exit(main())
