"""The northbound platform API: aiohttp over HTTPS, JSON, problem details for errors."""
