"""TEST FAKE (fault injection): an adapter module that calls os.abort() when it is imported.

Registered as the ``abort-at-import`` entry point of ``benchkit_test_fakes``: whatever imports it dies of SIGABRT,
so benchkit must only ever import it in a process of its own."""

import os

os.abort()
