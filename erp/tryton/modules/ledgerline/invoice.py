"""The same unique external id on customer invoices and credit notes (see account.py).

The credit wizard (``account.invoice.credit``) takes the credit note's own
external id in its form, so the credit note Ledgerline asks for carries it."""

from trytond.model import fields
from trytond.pool import PoolMeta

from .account import ExternalIdMixin


class Invoice(ExternalIdMixin, metaclass=PoolMeta):
    __name__ = "account.invoice"


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
