"""What the bot decides: greetings, dialogs, operation bookkeeping, expiry, trust in results."""
