"""cactus-client admin plugin for der-gateway: admin steps become platform API calls."""
