"""Sub-commands of the ``cozoo`` command line."""
