# Ledgerline's Tryton module: see move.py.
