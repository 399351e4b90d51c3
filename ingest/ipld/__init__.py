"""IPLD pieces atproto uses: binary CIDs, strict DAG-CBOR (with links kept apart from bytes), CAR v1.

libipld is faster for frames but returns CID links as plain bytes, so a record's ``{"$link"}`` and
``{"$bytes"}`` could not be told apart after it; records go through this strict codec instead.
"""
