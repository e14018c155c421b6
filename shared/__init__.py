"""Woodpecker's shared mechanisms: one of each, used by every service."""
