"""Tiny-prior fixtures shared by the priors tests."""

from common.testing.fixtures import *  # noqa: F401,F403
