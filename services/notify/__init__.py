"""The notify service (see ../../README.md)."""
