# Ledgerline's Tryton module: the external id Tryton itself keeps unique (see account.py).
