"""Which connector class serves which connection kind."""

from __future__ import annotations

from django.utils.module_loading import import_string

from erp_sync.connectors.base import ConnectionConfig, Connector, Recorder

#: kind -> dotted path (imported on first use, so a missing ERP client library only
#: matters to the connections that need it).
CONNECTORS: dict[str, str] = {
    "tryton": "erp_sync.connectors.tryton.TrytonConnector",
    "memory": "erp_sync.connectors.memory.MemoryConnector",
}


class UnknownConnector(LookupError):
    pass


def connector_class(kind: str) -> type[Connector]:
    try:
        path = CONNECTORS[kind]
    except KeyError:
        raise UnknownConnector(f"no connector for ERP kind {kind!r}") from None
    cls: type[Connector] = import_string(path)
    return cls


def connector_for(config: ConnectionConfig, recorder: Recorder | None = None) -> Connector:
    return connector_class(config.kind)(config, recorder)
