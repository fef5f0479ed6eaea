"""``python -m pricewave`` runs the CLI."""

import sys

from pricewave.cli import main

sys.exit(main())
