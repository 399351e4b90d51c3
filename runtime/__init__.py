"""Process plumbing shared by every part: logging, metrics endpoint, lifecycle, backoff, base settings.

No domain logic lives here (see ../shared/STYLE.md, "runtime/ ≤6 modules").
"""
