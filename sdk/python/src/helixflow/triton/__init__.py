"""tritonclient's modules with HelixFlow's credentials, TLS and retries:
helixflow.triton.grpc, .grpc.aio, .http, .http.aio. Each re-exports its
tritonclient module with InferenceServerClient wrapped, so existing code
changes its import only."""
