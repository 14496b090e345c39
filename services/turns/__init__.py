"""One turn of a conversation: authentication, the adapter, the unit of work and its outbox."""
