"""Transfer workers: a consumer group copying one disk per request, with progress and checkpoints."""
