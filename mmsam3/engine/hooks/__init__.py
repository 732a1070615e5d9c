"""Hooks of mmsam3."""
