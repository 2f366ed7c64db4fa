"""The external id Ledgerline posts under, kept unique by Tryton's own database.

Tryton has no idempotency key, and neither ``account.move.description`` nor
``account.invoice.reference`` is unique. Ledgerline's connector writes its
deterministic external id (``ll-je-us-42``) into ``ledgerline_external_id`` and
this module puts a UNIQUE index on it (PostgreSQL and SQLite alike), so a second
copy of a document is refused by the ERP itself, whatever the client does.
NULL is allowed any number of times: documents made in Tryton by hand have none.

``ledgerline_post(ids, fields)`` (account.move and account.invoice, over RPC): the
"post" button, then the records read back with ``fields``, in one request and one
transaction. Ledgerline reads a document's state back after posting it (Tryton can
answer a post without error and leave a draft); this gives that read-back in the
post's own answer instead of a second request. ``post`` itself is unchanged (the
client's button still returns nothing), access is checked as for the button.

A copy (the reversal made by the cancel wizard, a duplicate made in the client)
never inherits the id. The cancel wizard (``account.move.cancel``) takes the
reversal's own external id and date in its form, so the reversal Ledgerline asks
for is findable, and refused a second time, like any other document.
"""

from trytond.model import Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.rpc import RPC


class ExternalIdMixin:
    """``ledgerline_external_id``: unique, never copied; ``ledgerline_post`` (account.move and
    account.invoice)."""

    ledgerline_external_id = fields.Char(
        "Ledgerline External ID",
        help="The id Ledgerline posted this document under (unique).",
    )

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            (
                "ledgerline_external_id_uniq",
                Unique(t, t.ledgerline_external_id),
                "ledgerline.msg_external_id_unique",
            ),
        ]
        cls.__rpc__.update({"ledgerline_post": RPC(readonly=False, instantiate=0)})

    @classmethod
    def ledgerline_post(cls, records, fields_names):
        """Post (the button, with its access checks and warnings) and read back."""
        cls.post(records)
        return cls.read([r.id for r in records], fields_names)

    @classmethod
    def copy(cls, records, default=None):
        default = dict(default or {})
        default.setdefault("ledgerline_external_id", None)
        return super().copy(records, default=default)


class Move(ExternalIdMixin, metaclass=PoolMeta):
    __name__ = "account.move"


class CancelMovesDefault(metaclass=PoolMeta):
    __name__ = "account.move.cancel.default"

    ledgerline_external_id = fields.Char("Ledgerline External ID")
    ledgerline_date = fields.Date("Ledgerline Reversal Date")


class CancelMoves(metaclass=PoolMeta):
    __name__ = "account.move.cancel"

    def default_cancel(self, move):
        default = super().default_cancel(move)
        if self.default.ledgerline_external_id:
            default["ledgerline_external_id"] = self.default.ledgerline_external_id
        if self.default.ledgerline_date:
            Period = Pool().get("account.period")
            default["date"] = self.default.ledgerline_date
            default["period"] = Period.find(move.company, date=self.default.ledgerline_date).id
        return default
