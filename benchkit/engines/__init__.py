"""Measurement engines other than benchkit's own scenario loops.

``benchkit run --engine mlperf`` runs the same cells through MLPerf LoadGen
(:mod:`benchkit.engines.mlperf`, optional extra ``benchkit[mlperf]``): the same
spec, two engines, one record format.
"""
