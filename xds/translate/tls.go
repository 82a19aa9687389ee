package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/xds/ir"
)

// ALPN values.
const (
	alpnH2     = "h2"
	alpnHTTP11 = "http/1.1"
)

func transportSocket(ctx proto.Message) (*corev3.TransportSocket, error) {
	a, err := typed(ctx)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{
		Name:       transportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a},
	}, nil
}

func sdsSecret(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsSource()}
}

// downstreamTLS serves the listener's certificate from SDS. Clients
// authenticate with tokens, not certificates.
func downstreamTLS(alpn []string) (*corev3.TransportSocket, error) {
	return transportSocket(&tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{
				TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2,
			},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(SecretListenerCert)},
			AlpnProtocols:                  alpn,
		},
	})
}

// upstreamTLS is (m)TLS from Envoy to one upstream role: Envoy's client
// certificate and the trusted CA come from SDS (so both rotate without a
// cluster update); the SAN check stays here because it is not a secret.
// alpn must match the cluster's protocol: gRPC servers (grpc-go) refuse a
// TLS connection that did not negotiate h2.
func upstreamTLS(role string, t *ir.UpstreamTLS, alpn string) (*corev3.TransportSocket, error) {
	// ServerName is required (ir validates it): the service must present
	// its own name, not just any certificate from the CA.
	validation := &tlsv3.CertificateValidationContext{
		MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
			SanType: tlsv3.SubjectAltNameMatcher_DNS,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: t.ServerName}},
		}},
	}
	common := &tlsv3.CommonTlsContext{
		TlsParams: &tlsv3.TlsParameters{
			TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2,
		},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         validation,
				ValidationContextSdsSecretConfig: sdsSecret(CASecret(role)),
			},
		},
		AlpnProtocols: []string{alpn},
	}
	// No client certificate only where ir allows it (helix-authz's public
	// port, which asks for none).
	if t.CertFile != "" {
		common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sdsSecret(ClientCertSecret(role))}
	}
	return transportSocket(&tlsv3.UpstreamTlsContext{Sni: t.ServerName, CommonTlsContext: common})
}
