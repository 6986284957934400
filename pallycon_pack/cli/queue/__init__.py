"""submit, status, results: put requests on the queue and follow them."""
