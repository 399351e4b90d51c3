"""Repository structure and proofs: the MST, commit signatures and op inversion (Sync 1.1).

Importing the package first refuses a stale compiled build (:mod:`ingest.verify.compiled`): the
hot modules may be compiled with mypyc, and an extension module shadows its ``.py``, so one built
from older sources must fail loudly here rather than run old verification code.
"""

from ingest.verify.compiled import ensure_current

ensure_current()
