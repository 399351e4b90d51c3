"""Process plumbing shared by every part: logging, metrics endpoint, lifecycle, backoff, base settings,
and the SSRF-guarded outbound HTTP (urls, outbound) that both the API and ingest need.

No domain logic lives here (see ../shared/STYLE.md, "runtime/ ≤6 modules").
"""
