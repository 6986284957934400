"""sign, storage, jobs: the PallyCon API called directly, no queue."""
