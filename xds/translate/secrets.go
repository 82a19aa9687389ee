package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/helixflow/helixflow/xds/ir"
)

// Secrets carry file paths, not key material: Envoy reads the files itself
// and, because the secret came over SDS, watches them (the files'
// directories, or WatchDir when set) and reloads a rotated pair on its own.
// So rotation needs no new snapshot, keys never travel over xDS, and
// helix-xds never reads a private key. The cost: the paths are paths on
// Envoy's file system (same host, or the same volume in a pod).
func secrets(g *ir.Gateway) ([]types.Resource, error) {
	var out []types.Resource
	add := func(s *tlsv3.Secret) error {
		if err := check("secret", s.Name, s); err != nil {
			return err
		}
		out = append(out, s)
		return nil
	}
	if t := g.Listener.TLS; t != nil {
		if err := add(certSecret(SecretListenerCert, t.CertFile, t.KeyFile, t.WatchDir)); err != nil {
			return nil, err
		}
	}
	for _, u := range upstreamRoles(g) {
		if u.tls.CertFile != "" {
			if err := add(certSecret(ClientCertSecret(u.role), u.tls.CertFile, u.tls.KeyFile, u.tls.WatchDir)); err != nil {
				return nil, err
			}
		}
		if err := add(caSecret(CASecret(u.role), u.tls.CAFile, u.tls.WatchDir)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type roleTLS struct {
	role string
	tls  *ir.UpstreamTLS
}

// upstreamRoles lists the upstreams that use TLS, in a fixed order.
func upstreamRoles(g *ir.Gateway) []roleTLS {
	var out []roleTLS
	if g.AuthZ.Upstream.TLS != nil {
		out = append(out, roleTLS{RoleAuthZ, g.AuthZ.Upstream.TLS})
	}
	if p := g.AuthZ.Public; p != nil && p.TLS != nil {
		out = append(out, roleTLS{RoleAuthZPublic, p.TLS})
	}
	if g.Workers != nil {
		out = append(out, roleTLS{RoleWorkers, g.Workers})
	}
	if tr := g.Tracing; tr != nil && tr.Collector.TLS != nil {
		out = append(out, roleTLS{RoleTracing, tr.Collector.TLS})
	}
	return out
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func watched(dir string) *corev3.WatchedDirectory {
	if dir == "" {
		return nil
	}
	return &corev3.WatchedDirectory{Path: dir}
}

func certSecret(name, certFile, keyFile, watchDir string) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: fileSource(certFile),
			PrivateKey:       fileSource(keyFile),
			WatchedDirectory: watched(watchDir),
		}},
	}
}

func caSecret(name, caFile, watchDir string) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa:        fileSource(caFile),
			WatchedDirectory: watched(watchDir),
		}},
	}
}
