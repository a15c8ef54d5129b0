"""Results: the record format and everything that reads records (store, compare, export, trust, bundles, report).

Nothing here touches a backend: these modules read and write records only.
"""
