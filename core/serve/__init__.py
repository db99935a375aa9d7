"""The retrieval service: published versions, the served release, the store of added products, the HTTP API."""
