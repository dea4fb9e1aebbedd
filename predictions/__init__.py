"""predictions: the audit log of every prediction, batches, outcomes and alerts."""
