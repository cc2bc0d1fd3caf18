"""The embedded REST server (aiohttp) that the DSA-110 web dashboard consumes."""
