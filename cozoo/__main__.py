"""``python -m cozoo`` (and ``torchrun -m cozoo``): the command line, as the ``cozoo`` script."""

from cozoo.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
