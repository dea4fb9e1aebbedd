"""mlcore: the flood-risk model; engine/ is plain ML code, the rest is its Django registry."""
