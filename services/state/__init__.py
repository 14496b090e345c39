"""Cosmos DB and the bot's state on it: the account, state documents, the SDK's state scopes."""
