"""Build the optional Cython backend; the package works without it (pure-Python fallback)."""
from setuptools import setup

setup()
