"""Generated from pubsub_api.proto by grpcio-tools (see the .proto for the command); not edited by hand except
the generated gRPC module's import of its sibling, made package-relative."""
