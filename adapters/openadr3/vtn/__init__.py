"""The VTN itself: OpenADR objects, their privacy and targeting, auth, and notifiers."""
