package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/netaddr"
	"github.com/helixflow/helixflow/internal/tlsfiles"
)

// ALPN protocols the listeners offer: gRPC needs h2 (grpc-go refuses a TLS
// connection without it); the KServe v2 HTTP API is HTTP/1.1, as Triton's
// and as Envoy's REST pools speak it.
const (
	alpnGRPC = "h2"
	alpnHTTP = "http/1.1"
)

// errTLSFlags: the TLS flags do not fit together (the error names them).
var errTLSFlags = errors.New("TLS flags")

// tlsOptions are the TLS flags of the HTTP and gRPC listeners. HelixFlow's
// set (--tls-cert-file, --tls-key-file, --client-ca-file, as helix-xds and
// helix-authz have) covers both listeners; Triton's --grpc-use-ssl flags,
// when on, set the gRPC listener's instead. The metrics listener is always
// plaintext.
type tlsOptions struct {
	certFile, keyFile, clientCAFile string

	grpcUseSSL, grpcUseSSLMutual                bool
	grpcServerCert, grpcServerKey, grpcRootCert string

	insecurePlaintext bool
}

// listenerTLS is one listener's TLS; an empty certFile is plaintext, an
// empty clientCAFile serves without asking for client certificates.
type listenerTLS struct {
	certFile, keyFile, clientCAFile string
}

func (l listenerTLS) on() bool { return l.certFile != "" }

// mode names the listener's TLS for logs: off, tls or mtls.
func (l listenerTLS) mode() string {
	switch {
	case !l.on():
		return "off"
	case l.clientCAFile == "":
		return "tls"
	}
	return "mtls"
}

func (t *tlsOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&t.certFile, "tls-cert-file", "", "server certificate (PEM) of the HTTP and gRPC listeners; read again when it changes (as are the key and client CA), so a rotated file takes effect without a restart")
	fs.StringVar(&t.keyFile, "tls-key-file", "", "private key (PEM) of --tls-cert-file")
	fs.StringVar(&t.clientCAFile, "client-ca-file", "", "CA bundle (PEM); with it, HTTP and gRPC clients must present a certificate it signed (mTLS)")
	fs.BoolVar(&t.grpcUseSSL, "grpc-use-ssl", false, "Triton's: serve gRPC over TLS with --grpc-server-cert and --grpc-server-key (instead of --tls-cert-file's)")
	fs.BoolVar(&t.grpcUseSSLMutual, "grpc-use-ssl-mutual", false, "Triton's: gRPC over mutual TLS, clients verified against --grpc-root-cert; implies --grpc-use-ssl")
	fs.StringVar(&t.grpcServerCert, "grpc-server-cert", "", "Triton's: gRPC server certificate (PEM), with --grpc-use-ssl")
	fs.StringVar(&t.grpcServerKey, "grpc-server-key", "", "Triton's: private key (PEM) of --grpc-server-cert")
	fs.StringVar(&t.grpcRootCert, "grpc-root-cert", "", "Triton's: CA bundle (PEM) that verifies gRPC clients, with --grpc-use-ssl-mutual")
	fs.BoolVar(&t.insecurePlaintext, "insecure-plaintext", false, "serve HTTP and gRPC without TLS on a non-loopback address (refused otherwise): whoever reaches the ports calls the worker without the gateway's authorization")
}

// check validates the TLS flags among themselves.
func (t *tlsOptions) check() error {
	if t.grpcUseSSLMutual {
		t.grpcUseSSL = true // as in Triton
	}
	switch {
	case (t.certFile == "") != (t.keyFile == ""):
		return fmt.Errorf("%w: --tls-cert-file and --tls-key-file go together", errTLSFlags)
	case t.clientCAFile != "" && t.certFile == "":
		return fmt.Errorf("%w: --client-ca-file needs --tls-cert-file and --tls-key-file", errTLSFlags)
	case t.grpcUseSSL && (t.grpcServerCert == "" || t.grpcServerKey == ""):
		return fmt.Errorf("%w: --grpc-use-ssl needs --grpc-server-cert and --grpc-server-key", errTLSFlags)
	case t.grpcUseSSLMutual && t.grpcRootCert == "":
		return fmt.Errorf("%w: --grpc-use-ssl-mutual needs --grpc-root-cert", errTLSFlags)
	case !t.grpcUseSSL && t.grpcServerCert+t.grpcServerKey+t.grpcRootCert != "":
		// Triton would serve plaintext here; refuse what was surely meant as TLS.
		return fmt.Errorf("%w: --grpc-server-cert, --grpc-server-key and --grpc-root-cert need --grpc-use-ssl or --grpc-use-ssl-mutual", errTLSFlags)
	}
	return nil
}

// grpc is the gRPC listener's TLS: Triton's flags when on, else the shared set.
func (t *tlsOptions) grpc() listenerTLS {
	if !t.grpcUseSSL {
		return t.http()
	}
	l := listenerTLS{certFile: t.grpcServerCert, keyFile: t.grpcServerKey}
	if t.grpcUseSSLMutual {
		l.clientCAFile = t.grpcRootCert
	}
	return l
}

// http is the HTTP listener's TLS.
func (t *tlsOptions) http() listenerTLS {
	return listenerTLS{certFile: t.certFile, keyFile: t.keyFile, clientCAFile: t.clientCAFile}
}

// Bind addresses when --http-address or --grpc-address is not given.
const (
	tritonAddress   = "0.0.0.0" // Triton's default: every interface
	loopbackAddress = "127.0.0.1"
)

// chooseAddresses fills the HTTP and gRPC addresses not given: Triton's
// 0.0.0.0 when the listener serves TLS or --insecure-plaintext says so,
// else loopback, so that `helix-worker --model-repository DIR` starts,
// as tritonserver does, without opening the worker to other hosts. It
// notes why, for the start's log. Given addresses (given holds the flags
// set, as "--name") are kept, and checked by checkPlaintext.
func (o *options) chooseAddresses(given map[string]bool) {
	choose := func(addr *string, why *string, flagName string, l listenerTLS) {
		switch {
		case given[flagName]:
			*why = flagName + " given"
		case l.on():
			*addr, *why = tritonAddress, "default with TLS: every interface, as Triton"
		case o.tls.insecurePlaintext:
			*addr, *why = tritonAddress, "default with --insecure-plaintext: every interface, as Triton"
		default:
			*addr, *why = loopbackAddress, "default without TLS: loopback only; give --tls-cert-file, --tls-key-file and --client-ca-file (or "+flagName+" and --insecure-plaintext) to serve other hosts"
		}
	}
	choose(&o.httpAddr, &o.httpAddrWhy, "--http-address", o.tls.http())
	choose(&o.grpcAddr, &o.grpcAddrWhy, "--grpc-address", o.tls.grpc())
}

// checkPlaintext refuses a plaintext HTTP or gRPC listener on a
// non-loopback address unless --insecure-plaintext: the worker trusts the
// gateway's authorization, so only the gateway should reach it.
func checkPlaintext(o *options) error {
	if o.tls.insecurePlaintext {
		return nil
	}
	ls := plaintextListeners(o)
	if len(ls) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s %s without TLS is refused on a non-loopback address: give --tls-cert-file, --tls-key-file and --client-ca-file (mTLS), bind a loopback address, or pass --insecure-plaintext", errTLSFlags, ls[0], o.addr(ls[0]))
}

// plaintextListeners names the address flags of the served listeners that
// are plaintext on a non-loopback address.
func plaintextListeners(o *options) []string {
	var out []string
	if o.allowHTTP && !o.tls.http().on() && !netaddr.LoopbackHost(o.httpAddr) {
		out = append(out, "--http-address")
	}
	if o.allowGRPC && !o.tls.grpc().on() && !netaddr.LoopbackHost(o.grpcAddr) {
		out = append(out, "--grpc-address")
	}
	return out
}

func (o *options) addr(flagName string) string {
	if flagName == "--grpc-address" {
		return o.grpcAddr
	}
	return o.httpAddr
}

// tlsWarnings are the settings that run but deserve a loud log line.
func tlsWarnings(o *options) []string {
	var out []string
	for _, l := range plaintextListeners(o) { // only with --insecure-plaintext
		out = append(out, fmt.Sprintf("%s %s: plaintext on a non-loopback address (--insecure-plaintext): whoever reaches it can infer without the gateway's authorization", l, o.addr(l)))
	}
	if o.allowHTTP && o.tls.http().mode() == "tls" && !netaddr.LoopbackHost(o.httpAddr) {
		out = append(out, fmt.Sprintf("--http-address %s: TLS without --client-ca-file: any client that reaches it can infer without the gateway's authorization", o.httpAddr))
	}
	if o.allowGRPC && o.tls.grpc().mode() == "tls" && !netaddr.LoopbackHost(o.grpcAddr) {
		out = append(out, fmt.Sprintf("--grpc-address %s: TLS without client certificates (--client-ca-file or --grpc-use-ssl-mutual): any client that reaches it can infer without the gateway's authorization", o.grpcAddr))
	}
	if o.tls.grpcRootCert != "" && !o.tls.grpcUseSSLMutual {
		out = append(out, "--grpc-root-cert is ignored without --grpc-use-ssl-mutual (as in Triton): gRPC clients are not asked for certificates")
	}
	return out
}

// serverTLS builds a listener's TLS configuration (nil for plaintext)
// offering alpn; the files are read again when they change. With a client
// CA, only Envoy's identity gets in (internal/identity): every component's
// certificate comes from that CA, and another worker's must not reach
// inference or the repository API.
func serverTLS(l listenerTLS, alpn string) (*tls.Config, error) {
	if !l.on() {
		return nil, nil
	}
	conf, err := tlsfiles.ServerConfig(l.certFile, l.keyFile, l.clientCAFile, tlsfiles.AcceptPeers(identity.WorkerCallers()...))
	if err != nil {
		return nil, err
	}
	conf.NextProtos = []string{alpn}
	return conf, nil
}

// listenerTLSConfigs reads the served listeners' certificates (nil: plaintext)
// and logs what deserves a warning.
func listenerTLSConfigs(o *options, log *slog.Logger) (grpcConf, httpConf *tls.Config, err error) {
	for _, w := range tlsWarnings(o) {
		log.Warn("insecure listener", "warning", w)
	}
	if o.allowGRPC {
		if grpcConf, err = serverTLS(o.tls.grpc(), alpnGRPC); err != nil {
			return nil, nil, fmt.Errorf("gRPC TLS: %w", err)
		}
	}
	if o.allowHTTP {
		if httpConf, err = serverTLS(o.tls.http(), alpnHTTP); err != nil {
			return nil, nil, fmt.Errorf("HTTP TLS: %w", err)
		}
	}
	return grpcConf, httpConf, nil
}
