"""The admin API (/admin/api/...): bearer tokens with roles on every endpoint."""
