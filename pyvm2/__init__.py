"""pyvm2: a process manager that speaks pm2's language."""

__version__ = "0.1.0"
