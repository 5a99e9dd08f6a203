"""threadwise core: the platform-free conversation service (asyncio only)."""
