"""The channel: the Direct Line client, the Connector's errors, the send rate."""
