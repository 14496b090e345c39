"""Notifications' storage: each user's latest conversation reference, topics and delivered ids."""
