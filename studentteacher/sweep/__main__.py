"""``python -m studentteacher.sweep``: the command line (:func:`studentteacher.sweep.cli.main`)."""
import sys

from .cli import main

sys.exit(main())
