"""ERP connectors: one class per ERP behind one interface (base.Connector).

`registry.connector_for(config, recorder)` picks the class by the connection's kind.
"""
