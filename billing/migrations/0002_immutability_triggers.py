"""PostgreSQL holds the rules too: finalized documents are immutable, finance events append-only.

A finalized invoice (or adjustment, or credit memo) may only move finalized ->
void or finalized -> paid (with its timestamps/reason) and have its
`credited_total` raised; its lines only their `credited_amount` raised; its tax
lines nothing. Deleting any of them, or adding lines to it, is refused.
"""

from django.db import migrations

from core.dbtriggers import append_only, postgres_only

REFUSE = "USING ERRCODE = 'integrity_constraint_violation'"

INVOICE = f"""
CREATE OR REPLACE FUNCTION billing_invoice_immutable() RETURNS trigger AS $$
DECLARE
  free text[] := ARRAY['status', 'voided_at', 'void_reason', 'paid_at', 'credited_total'];
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
  END IF;
  RETURN NEW;
END; $$ LANGUAGE plpgsql;
CREATE TRIGGER billing_invoice_immutable_row BEFORE UPDATE OR DELETE ON billing_invoice
  FOR EACH ROW EXECUTE FUNCTION billing_invoice_immutable();
"""


def child_trigger(table: str, free_columns: list[str]) -> str:
    free = "ARRAY[" + ", ".join(f"'{c}'" for c in free_columns) + "]::text[]"
    credited_check = (
        f"""IF NEW.credited_amount < OLD.credited_amount THEN
      RAISE EXCEPTION 'credited amount of a finalized line cannot decrease' {REFUSE};
    END IF;"""
        if "credited_amount" in free_columns
        else ""
    )
    return f"""
CREATE OR REPLACE FUNCTION {table}_immutable() RETURNS trigger AS $$
DECLARE
  st text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT status INTO st FROM billing_invoice WHERE id = NEW.invoice_id;
    IF st IS DISTINCT FROM 'draft' THEN
      RAISE EXCEPTION 'cannot add to finalized document %', NEW.invoice_id {REFUSE};
    END IF;
    RETURN NEW;
  END IF;
  SELECT status INTO st FROM billing_invoice WHERE id = OLD.invoice_id;
  IF st = 'draft' THEN
    IF TG_OP = 'UPDATE' AND NEW.invoice_id <> OLD.invoice_id THEN
      SELECT status INTO st FROM billing_invoice WHERE id = NEW.invoice_id;
      IF st IS DISTINCT FROM 'draft' THEN
        RAISE EXCEPTION 'cannot move a line into finalized document %', NEW.invoice_id {REFUSE};
      END IF;
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'lines of finalized document % cannot be deleted', OLD.invoice_id {REFUSE};
  END IF;
  IF (to_jsonb(NEW) - {free}) IS DISTINCT FROM (to_jsonb(OLD) - {free}) THEN
    RAISE EXCEPTION 'lines of finalized document % are immutable', OLD.invoice_id {REFUSE};
  END IF;
  {credited_check}
  RETURN NEW;
END; $$ LANGUAGE plpgsql;
CREATE TRIGGER {table}_immutable_row BEFORE INSERT OR UPDATE OR DELETE ON {table}
  FOR EACH ROW EXECUTE FUNCTION {table}_immutable();
"""


def drop(table: str) -> str:
    return f"DROP TRIGGER IF EXISTS {table}_immutable_row ON {table}; DROP FUNCTION IF EXISTS {table}_immutable();"


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [
        postgres_only(INVOICE, drop("billing_invoice")),
        postgres_only(
            child_trigger("billing_invoiceline", ["credited_amount"]), drop("billing_invoiceline")
        ),
        postgres_only(child_trigger("billing_invoicetaxline", []), drop("billing_invoicetaxline")),
        append_only("billing_financeevent", what="finance events"),
    ]
