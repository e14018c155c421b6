"""The routing service (see ../../README.md)."""
