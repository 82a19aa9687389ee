package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/helixflow/helixflow/extauthz/catalog"
	"github.com/helixflow/helixflow/extauthz/webapi"
	"github.com/helixflow/helixflow/internal/cliauth"
	"github.com/helixflow/helixflow/internal/secretfile"
)

// modelsFlags say who asks for the catalogue: the signed-in person
// (helixctl login), a client (client credentials) or an API key.
type modelsFlags struct {
	personFlags
	json                   bool
	clientID, secretFile   string
	apiKeyFile             string
	issuerFlag, caFileFlag string
}

func (m *modelsFlags) register(fs *flag.FlagSet) {
	m.personFlags.register(fs, false)
	fs.BoolVar(&m.json, "json", false, "print JSON (the API's answer), as --output json")
	fs.StringVar(&m.issuerFlag, "issuer", os.Getenv("HELIX_ISSUER"), "helix-authz's issuer URL, for a client or an API key (env HELIX_ISSUER; a signed-in person's is in the credentials file)")
	fs.StringVar(&m.caFileFlag, "ca-file", os.Getenv("HELIX_CA_FILE"), "CA of helix-authz's certificate, for a client or an API key (env HELIX_CA_FILE; default: the system roots)")
	fs.StringVar(&m.clientID, "client-id", os.Getenv("HELIX_CLIENT_ID"), "ask as this client (client credentials; env HELIX_CLIENT_ID); its secret in --client-secret-file or HELIX_CLIENT_SECRET")
	fs.StringVar(&m.secretFile, "client-secret-file", "", "file holding --client-id's secret (env HELIX_CLIENT_SECRET holds it instead)")
	fs.StringVar(&m.apiKeyFile, "api-key-file", "", "ask with this API key (hx_...; env HELIX_API_KEY holds it instead)")
}

// runModels lists the model catalogue as the caller sees it
// (GET /api/v1/models), or shows one model.
func runModels(ctx context.Context, sub string, args []string, out io.Writer) error {
	nargs, what := 0, "models list takes no argument"
	switch sub {
	case "list":
	case "get":
		nargs, what = 1, "models get takes a model name"
	default:
		return fmt.Errorf("%w: unknown subcommand models %q (list, get)", errUsage, sub)
	}
	var mf modelsFlags
	fs := flag.NewFlagSet("models "+sub, flag.ContinueOnError)
	mf.register(fs)
	pos, err := parse(fs, args, nargs, what)
	if err != nil {
		return err
	}
	if mf.json {
		mf.output = "json"
	}
	base, hc, auth, err := mf.caller(ctx)
	if err != nil {
		return err
	}
	path := catalog.PathModels
	if sub == "get" {
		path += "/" + url.PathEscape(pos[0])
	}
	body, err := apiGet(ctx, hc, base+path, auth)
	if err != nil {
		return fmt.Errorf("models %s: %w", sub, err)
	}
	if mf.output == "json" {
		_, err := out.Write(body)
		return err
	}
	var models []catalog.Model
	if sub == "get" {
		var m catalog.Model
		if err := json.Unmarshal(body, &m); err != nil {
			return fmt.Errorf("models get: %w", err)
		}
		models = []catalog.Model{m}
	} else {
		var l catalog.ListResponse
		if err := json.Unmarshal(body, &l); err != nil {
			return fmt.Errorf("models list: %w", err)
		}
		models = l.Models
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tREADY\tWORKERS\tVERSIONS\tPLATFORM\tMAX BATCH\tINPUTS\tOUTPUTS")
	for _, m := range models {
		fmt.Fprintf(tw, "%s\t%v\t%d/%d\t%s\t%s\t%d\t%s\t%s\n", m.Name, m.Ready, m.ReadyWorkers, m.Workers,
			strings.Join(m.Versions, ","), m.Platform, m.MaxBatchSize, tensorList(m.Inputs), tensorList(m.Outputs))
	}
	return tw.Flush()
}

// tensorList is "NAME:DATATYPE[dims] ...".
func tensorList(ts []catalog.Tensor) string {
	parts := make([]string, 0, len(ts))
	for _, t := range ts {
		dims := make([]string, 0, len(t.Shape))
		for _, d := range t.Shape {
			dims = append(dims, strconv.FormatInt(d, 10))
		}
		parts = append(parts, fmt.Sprintf("%s:%s[%s]", t.Name, t.Datatype, strings.Join(dims, ",")))
	}
	return strings.Join(parts, " ")
}

// caller returns helix-authz's base URL, an HTTP client trusting its CA
// and the request's credential header (name, value): an API key, a
// client's token, or the signed-in person's token, in that order.
func (m *modelsFlags) caller(ctx context.Context) (base string, hc *http.Client, auth [2]string, err error) {
	if m.output != "table" && m.output != "json" {
		return "", nil, auth, fmt.Errorf("%w: --output %q: want table or json", errUsage, m.output)
	}
	key, err := secretfile.Read("--api-key-file", m.apiKeyFile, "HELIX_API_KEY")
	if err != nil {
		return "", nil, auth, err
	}
	if key != "" || m.clientID != "" {
		if m.issuerFlag == "" {
			return "", nil, auth, fmt.Errorf("%w: --issuer (or HELIX_ISSUER) is required with a client or an API key", errUsage)
		}
		if base, err = cliauth.CheckIssuer(m.issuerFlag); err != nil {
			return "", nil, auth, fmt.Errorf("%w: --issuer: %v", errUsage, err)
		}
		if hc, err = cliauth.HTTPClient(m.caFileFlag); err != nil {
			return "", nil, auth, err
		}
		if key != "" {
			return base, hc, [2]string{"X-Api-Key", key}, nil
		}
		secret, err := secretfile.Read("--client-secret-file", m.secretFile, "HELIX_CLIENT_SECRET")
		if err != nil {
			return "", nil, auth, err
		}
		if secret == "" {
			return "", nil, auth, fmt.Errorf("%w: --client-id needs its secret in --client-secret-file or HELIX_CLIENT_SECRET", errUsage)
		}
		tok, err := clientToken(ctx, hc, base, m.clientID, secret)
		if err != nil {
			return "", nil, auth, err
		}
		return base, hc, [2]string{"Authorization", "Bearer " + tok}, nil
	}
	s, err := m.session()
	if err != nil {
		return "", nil, auth, err
	}
	c, err := s.Current(ctx)
	if err != nil {
		return "", nil, auth, fmt.Errorf("%w (or give --client-id or an API key)", err)
	}
	if hc, err = cliauth.HTTPClient(c.CAFile); err != nil {
		return "", nil, auth, err
	}
	return c.Issuer, hc, [2]string{"Authorization", "Bearer " + c.AccessToken}, nil
}

// clientToken gets a client-credentials access token from the issuer's
// token endpoint (RFC 8414 metadata).
func clientToken(ctx context.Context, hc *http.Client, issuer, id, secret string) (string, error) {
	var md struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	if _, err := getJSON(ctx, hc, issuer+"/.well-known/oauth-authorization-server", [2]string{}, &md); err != nil {
		return "", fmt.Errorf("metadata of %s: %w", issuer, err)
	}
	if md.Issuer != issuer || !strings.HasPrefix(md.TokenEndpoint, issuer+"/") {
		return "", fmt.Errorf("the metadata at %s names issuer %q, token endpoint %q", issuer, md.Issuer, md.TokenEndpoint)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, md.TokenEndpoint,
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) // RFC 6749 2.3.1
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr)
	if resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		return "", fmt.Errorf("token for client %s: HTTP %d %s %s", id, resp.StatusCode, tr.Error, tr.Description)
	}
	return tr.AccessToken, nil
}

// apiGet GETs a JSON API URL with the credential header and returns the
// 200 answer's body; any other answer is an error with the API's
// description.
func apiGet(ctx context.Context, hc *http.Client, u string, auth [2]string) ([]byte, error) {
	return getJSON(ctx, hc, u, auth, nil)
}

func getJSON(ctx context.Context, hc *http.Client, u string, auth [2]string, v any) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if auth[0] != "" {
		req.Header.Set(auth[0], auth[1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var eb webapi.ErrorBody
		if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
			return nil, fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, eb.Error, eb.Description)
		}
		return nil, errors.New("HTTP " + strconv.Itoa(resp.StatusCode))
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return nil, err
		}
	}
	return body, nil
}
