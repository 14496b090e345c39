"""Azure Storage queues: the operations queue and the outside events queue, with their clients."""
