"""Transcripts: recording what a turn committed and sent, storing and reading them in Table storage."""
