"""webhooks: the endpoints signed webhooks go to."""
