"""The ledger's invariants in PostgreSQL (hordak's pattern, see ../shared/STYLE.md):

- a deferred constraint trigger on journal lines: at commit, every entry a statement touched
  balances per currency (debits = credits) and has at least two lines;
- a deferred constraint trigger on journal entries: an entry is never committed without lines;
- journal entries and lines are append-only (UPDATE and DELETE refused): a correction is a
  reversal entry linked to the one it reverses.

The services check the same rules first, with a clearer message; SQLite relies on them.
"""

from django.db import migrations

from core.dbtriggers import append_only, postgres_only

BALANCED_FORWARD = """
CREATE OR REPLACE FUNCTION erp_sync_journal_balanced() RETURNS trigger AS $$
DECLARE
  bad record;
  n integer;
BEGIN
  SELECT currency_id, SUM(debit) AS dr, SUM(credit) AS cr INTO bad
    FROM erp_sync_journalline WHERE entry_id = NEW.entry_id
    GROUP BY currency_id HAVING SUM(debit) <> SUM(credit) LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'journal entry % does not balance in %: debits % <> credits %',
      NEW.entry_id, bad.currency_id, bad.dr, bad.cr
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  SELECT count(*) INTO n FROM erp_sync_journalline WHERE entry_id = NEW.entry_id;
  IF n < 2 THEN
    RAISE EXCEPTION 'journal entry % has % line(s); an entry has at least two', NEW.entry_id, n
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END; $$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER erp_sync_journal_balanced_trigger
  AFTER INSERT ON erp_sync_journalline
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION erp_sync_journal_balanced();

CREATE OR REPLACE FUNCTION erp_sync_journal_has_lines() RETURNS trigger AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM erp_sync_journalline WHERE entry_id = NEW.id) THEN
    RAISE EXCEPTION 'journal entry % has no lines', NEW.id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END; $$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER erp_sync_journal_has_lines_trigger
  AFTER INSERT ON erp_sync_journalentry
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION erp_sync_journal_has_lines();
"""

BALANCED_REVERSE = """
DROP TRIGGER IF EXISTS erp_sync_journal_balanced_trigger ON erp_sync_journalline;
DROP FUNCTION IF EXISTS erp_sync_journal_balanced();
DROP TRIGGER IF EXISTS erp_sync_journal_has_lines_trigger ON erp_sync_journalentry;
DROP FUNCTION IF EXISTS erp_sync_journal_has_lines();
"""


class Migration(migrations.Migration):
    dependencies = [("erp_sync", "0001_initial")]

    operations = [
        postgres_only(BALANCED_FORWARD, BALANCED_REVERSE),
        append_only("erp_sync_journalentry", what="journal entries"),
        append_only("erp_sync_journalline", what="journal lines"),
    ]
