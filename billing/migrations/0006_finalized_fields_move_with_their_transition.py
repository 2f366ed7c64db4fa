"""Finalized documents fully immutable (PostgreSQL): the free columns move only with their reason.

0002 let a finalized document's `status`, `voided_at`, `void_reason`,
`paid_at` and `credited_total` change. Now:

* `voided_at` and `void_reason` change only in the update that voids it
  (finalized -> void), `paid_at` only in the one that marks it paid
  (finalized -> paid); after that they are as immutable as the rest;
* `credited_total` changes only to the sum of the credit memos issued against
  it (the memo is numbered before the original's total is raised, in the same
  transaction), so it cannot be raised without a credit memo behind it.
"""

from django.db import migrations

from core.dbtriggers import postgres_only

REFUSE = "USING ERRCODE = 'integrity_constraint_violation'"


def invoice_function(*, transitions: bool) -> str:
    extra = (
        f"""
  IF (NEW.voided_at IS DISTINCT FROM OLD.voided_at OR NEW.void_reason IS DISTINCT FROM OLD.void_reason)
     AND NOT (OLD.status = 'finalized' AND NEW.status = 'void') THEN
    RAISE EXCEPTION 'void fields of % change only when it is voided', OLD.number {REFUSE};
  END IF;
  IF NEW.paid_at IS DISTINCT FROM OLD.paid_at AND NOT (OLD.status = 'finalized' AND NEW.status = 'paid') THEN
    RAISE EXCEPTION 'paid_at of % changes only when it is marked paid', OLD.number {REFUSE};
  END IF;
  IF NEW.credited_total IS DISTINCT FROM OLD.credited_total THEN
    SELECT COALESCE(-sum(m.total), 0) INTO issued FROM billing_invoice m
      WHERE m.credits_id = OLD.id AND m.kind = 'credit_memo' AND m.status <> 'draft';
    IF NEW.credited_total <> issued THEN
      RAISE EXCEPTION 'credited total of % must be what its credit memos credit (%)', OLD.number, issued
        {REFUSE};
    END IF;
  END IF;"""
        if transitions
        else ""
    )
    return f"""
CREATE OR REPLACE FUNCTION billing_invoice_immutable() RETURNS trigger AS $$
DECLARE
  free text[] := ARRAY['status', 'voided_at', 'void_reason', 'paid_at', 'credited_total'];
  issued numeric;
BEGIN
  IF OLD.status = 'draft' THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'finalized document % cannot be deleted', OLD.number {REFUSE};
  END IF;
  IF (to_jsonb(NEW) - free) IS DISTINCT FROM (to_jsonb(OLD) - free) THEN
    RAISE EXCEPTION 'finalized document % is immutable', OLD.number {REFUSE};
  END IF;
  IF NEW.status <> OLD.status AND NOT (OLD.status = 'finalized' AND NEW.status IN ('void', 'paid')) THEN
    RAISE EXCEPTION 'document % cannot go from % to %', OLD.number, OLD.status, NEW.status {REFUSE};
  END IF;
  IF NEW.credited_total < OLD.credited_total THEN
    RAISE EXCEPTION 'credited total of % cannot decrease', OLD.number {REFUSE};
  END IF;{extra}
  RETURN NEW;
END; $$ LANGUAGE plpgsql;
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_line_rated_usage")]

    operations = [
        postgres_only(invoice_function(transitions=True), invoice_function(transitions=False)),
    ]
