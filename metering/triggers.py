"""Metering's SQLite triggers as they must be now (core.dbtriggers re-creates missing ones).

Any change of a metric definition, metric version or customer mapping moves the reference
generation, so ingest's cached reference data is never stale (migrations 0005 and 0010; on
PostgreSQL one statement trigger per table does it, and a table altered there keeps it).
"""

REFERENCE_TABLES = (
    "metering_metricdefinition",
    "metering_metricversion",
    "metering_customermapping",
)

SQLITE_TRIGGERS = {
    f"{table}_reference_bump_{op.lower()}": (
        table,
        f"AFTER {op} ON {table} BEGIN "
        "UPDATE metering_reference_generation SET value = random() WHERE id = 1; END",
    )
    for table in REFERENCE_TABLES
    for op in ("INSERT", "UPDATE", "DELETE")
}
