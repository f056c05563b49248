"""``python -m studentteacher.results table|plot|overlay ...`` (:mod:`.cli`)."""
import sys

from .cli import main

sys.exit(main())
