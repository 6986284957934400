"""The intake that upstream systems use to enqueue packaging requests."""
