"""Generated protobuf and gRPC modules for the soriflow.v1 API (see protos/)."""
