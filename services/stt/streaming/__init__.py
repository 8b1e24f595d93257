"""Live transcription: incremental decoding, the LocalAgreement policy, and the gRPC session."""
