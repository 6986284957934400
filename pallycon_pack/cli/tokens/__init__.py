"""tokens: the HTTP API's bearer tokens."""
