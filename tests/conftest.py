"""Test-wide settings: property tests are derandomized in CI (same examples every run), random locally."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
