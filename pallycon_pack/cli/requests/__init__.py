"""requests, retry: read the stored requests and re-drive failed ones."""
