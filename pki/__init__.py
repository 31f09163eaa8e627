"""Certificates: 2030.5 identities (LFDI/SFDI), the dev PKI, and TLS context helpers."""
