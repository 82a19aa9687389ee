package wire

// Headers helix-authz sets on an authorized request: Envoy routes by them,
// workers and the access log read them. They are trusted only because the
// gateway's first HTTP filter removes every client-sent header starting
// with HeaderPrefix.
const (
	HeaderPrefix = "x-helix-"
	HeaderClient = "x-helix-client"
	HeaderPlan   = "x-helix-plan"
	// HeaderModel is the model helix-authz authorized; the worker refuses
	// a request whose gRPC message or REST path names another
	// (workers/infer.CheckGatewayModel).
	HeaderModel = "x-helix-model"
)

// HeaderStreamModel is the header (gRPC metadata key) a client names its
// ModelStreamInfer stream's model in: authz cannot read a stream's
// messages, so without it a stream needs every model's scope and lands in
// the default pool. It is not an x-helix-* header: Envoy strips those.
const HeaderStreamModel = "helix-model"

// Request headers helix-authz's Check reads besides the x-helix-* ones
// (which it removes): the credential, either form, and the content type,
// which picks the reply's format. Envoy sends Check these and no others
// (ext_authz allowed_headers): a smaller request costs both sides less.
const (
	HeaderAuthorization = "authorization"
	HeaderAPIKey        = "x-api-key"
	HeaderContentType   = "content-type"
)

// CheckHeaders are the exact header names Check reads; with HeaderPrefix,
// everything Envoy passes it. HeaderWSProtocol carries a browser's
// WebSocket credential (websocket.go), HeaderVariantRequest a tester's
// choice of a traffic policy's variant (traffic.go).
var CheckHeaders = []string{HeaderAuthorization, HeaderAPIKey, HeaderContentType, HeaderStreamModel, HeaderWSProtocol, HeaderVariantRequest}

// HeaderSequence is the Triton sequence (correlation id) a ModelInfer
// request belongs to, as helix-authz read it from the request's
// parameters (sequence_id): Envoy routes a request that has it to the
// model's consistent-hash clusters, hashing on its value, so that every
// request of one sequence reaches the same worker. Set only by helix-authz
// (SequenceHeaderValue); a client-sent one is stripped like every
// x-helix-* header. Workers do not read it.
const HeaderSequence = "x-helix-sequence"
