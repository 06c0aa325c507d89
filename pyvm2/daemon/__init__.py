"""The pyvm2 daemon: one asyncio loop supervising every app."""
