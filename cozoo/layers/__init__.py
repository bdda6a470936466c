"""Regular (clip-mode) building blocks shared by the model families and known to `cozoo.continual`.

The bottom layer of the package: it imports torch only."""
