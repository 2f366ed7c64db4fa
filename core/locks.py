"""Every PostgreSQL advisory lock id the application takes, in one place.

Lock order (take them in this order, never the reverse, so transactions cannot
deadlock on them): MAPPING (shared by ingest, exclusive by a new mapping) ->
EVENT_WATERMARK (shared by ingest, exclusive by the summary job, and by a supersession until
its commit) -> PARTITION ->
FINANCE_EVENTS -> rows: event keys (sorted), control totals (by source and day),
then exception cases (CASE_FINGERPRINT per bucket of fingerprint hashes, in order, then the
open case rows by id) -> the audit chain head, which every transaction takes
last, when it appends its audit entries (opening a case appends one: every case
a transaction will touch is locked before the first is opened). Ingest appends
all of a batch's entries in one statement as its last write
(exceptions.services.audit_record_many), so it holds the head only from there
to its commit (docs/decisions.md 50).
"""

from __future__ import annotations

MAPPING = 0x4C4C4D50  # "LLMP": ingest shares it; customer_mapping_create takes it alone
EVENT_WATERMARK = 0x4C4C4D45  # "LLME": ingest shares it; the summary watermark takes it alone
PARTITION = 0x4C4C5041  # "LLPA": serialises monthly partition creation between web workers
FINANCE_EVENTS = 0x4C4C4645  # "LLFE": finance event writers, so ids become visible in commit order
# With a second key, hashtext(fingerprint): a batch's exception cases, also the ones it is about to
# open (no row to lock yet), taken in hash order before any of them is opened.
CASE_FINGERPRINT = 0x4C4C4346  # "LLCF"
# ... by bucket: the second key is hashtext(fingerprint) & (BUCKETS - 1), so a batch takes at
# most this many (10,000 locks of one batch ran out of max_locks_per_transaction).
CASE_FINGERPRINT_BUCKETS = 256
