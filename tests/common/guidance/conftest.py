"""Tiny-prior fixtures shared by the guidance tests."""

from common.testing.fixtures import *  # noqa: F401,F403
