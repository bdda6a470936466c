"""``python -m cozoo`` (and ``torchrun -m cozoo``): the command line, as the ``cozoo`` script."""

import sys

from cozoo.cli import main

if __name__ == "__main__":
    sys.exit(main())
