"""One plain async handler per function: plain data in, plain data out, dependencies as arguments."""
