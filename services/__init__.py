"""Connections to the outside world: settings, storage, the Bot Framework adapter, queues, Direct Line."""
