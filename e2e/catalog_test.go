package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/catalog"
)

// TestModelCatalogue: the worker describes its models when it registers
// (--xds-address), helix-xds serves them on its Catalog to helix-authz
// (mTLS, helix-authz's identity), and helix-authz's GET /api/v1/models
// lists them filtered by each client's scopes and model list.
func TestModelCatalogue(t *testing.T) {
	s := startStack(t, stackOptions{selfRegister: true})
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12},
	}}
	list := func(ctx context.Context, token string) ([]catalog.Model, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.issuer+catalog.PathModels, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := https.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var l catalog.ListResponse
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
			return nil, err
		}
		return l.Models, nil
	}
	var simple catalog.Model
	waitFor(t, "the sample model in the catalogue, described and ready", 60*time.Second, nil, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.issuer+catalog.PathModels+"/"+sampleModel, nil)
		req.Header.Set("Authorization", "Bearer "+s.clients["all"].token)
		resp, err := https.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&simple); err != nil {
			return err
		}
		if !simple.Ready || len(simple.Inputs) == 0 || simple.Config == nil {
			return fmt.Errorf("not yet described: %+v", simple)
		}
		return nil
	})
	if simple.Platform == "" || simple.Inputs[0].Name == "" || simple.Inputs[0].Datatype == "" || len(simple.Versions) == 0 {
		t.Fatalf("the sample model's description: %+v", simple)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all, err := list(ctx, s.clients["all"].token)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range all {
		names = append(names, m.Name)
	}
	if !slices.Contains(names, sampleModel) {
		t.Fatalf("client with models:read on every model sees %v", names)
	}
	mlp, err := list(ctx, s.clients["mlp-only"].token)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mlp {
		if m.Name != "mlp" {
			t.Fatalf("client with models:mlp:infer sees %s", m.Name)
		}
	}
}
