"""The same unique external id on customer invoices and credit notes (see account.py).

The credit wizard (``account.invoice.credit``) takes the credit note's own
external id in its form, so the credit note Ledgerline asks for carries it."""

from trytond.model import Unique, fields
from trytond.pool import PoolMeta

from .account import EXTERNAL_ID_HELP


class Invoice(metaclass=PoolMeta):
    __name__ = "account.invoice"

    ledgerline_external_id = fields.Char("Ledgerline External ID", help=EXTERNAL_ID_HELP)

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

    @classmethod
    def copy(cls, invoices, default=None):
        default = dict(default or {})
        default.setdefault("ledgerline_external_id", None)
        return super().copy(invoices, default=default)


class CreditInvoiceStart(metaclass=PoolMeta):
    __name__ = "account.invoice.credit.start"

    ledgerline_external_id = fields.Char("Ledgerline External ID")


class CreditInvoice(metaclass=PoolMeta):
    __name__ = "account.invoice.credit"

    @property
    def _credit_options(self):
        options = super()._credit_options
        if self.start.ledgerline_external_id:
            options["ledgerline_external_id"] = self.start.ledgerline_external_id
        return options
