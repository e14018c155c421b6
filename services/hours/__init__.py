"""The hours service (see ../../README.md)."""
