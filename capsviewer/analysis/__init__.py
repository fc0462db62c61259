"""Numerical experiments behind the views (Qt-free)."""
