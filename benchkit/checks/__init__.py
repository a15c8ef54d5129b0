"""Checks: everything that decides whether a measurement counts, and the one author of the verdict.

Each check returns typed findings; :mod:`benchkit.checks.verdict` turns the
findings of a cell into its ``validity`` block. Nothing else writes validity.
"""
