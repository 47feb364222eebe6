"""Placeholder until this module lands (being written in this session)."""
