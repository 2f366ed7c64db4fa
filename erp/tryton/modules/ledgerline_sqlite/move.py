"""Restore account.move's balance check on SQLite.

trytond 8.2 stores Numeric values in SQLite as BLOBs (backend/sqlite/database.py
``adapt_decimal`` returns bytes). ``account.move.post`` finds unbalanced moves
with ``HAVING ABS(ROUND(SUM(debit - credit), digits)) >= :rounding``, where
``:rounding`` is bound as a BLOB; SQLite orders every number below every BLOB,
so the condition is never true and an unbalanced move is posted. On PostgreSQL
the same query refuses it.

This module repeats that check in Python, on SQLite only, before Tryton posts,
and raises Tryton's own error with Tryton's own message
(``account.msg_post_unbalanced_move``), so a client sees what a PostgreSQL-backed
Tryton would say. Everything else is Tryton's post.
"""

from trytond import backend
from trytond.i18n import gettext
from trytond.model import ModelView, dualmethod
from trytond.modules.account.exceptions import PostError
from trytond.pool import PoolMeta


class Move(metaclass=PoolMeta):
    __name__ = "account.move"

    @dualmethod
    @ModelView.button
    def post(cls, moves):
        if backend.name == "sqlite":
            for move in moves:
                balance = sum((line.debit - line.credit for line in move.lines), 0)
                if not move.company.currency.is_zero(balance):
                    raise PostError(gettext("account.msg_post_unbalanced_move", move=move.rec_name))
        super().post(moves)
