package models

import (
	"context"
	"maps"
	"slices"
	"strconv"

	"google.golang.org/protobuf/proto"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/repository"
)

// Extensions are the KServe/Triton protocol extensions this worker serves.
var Extensions = []string{
	"classification", "model_configuration", "model_repository",
	"model_repository(unload_dependents)", "schedule_policy", "statistics", "binary_tensor_data",
	"system_shared_memory",
}

// ServerMetadata implements infer.Service.
func (m *Manager) ServerMetadata() infer.ServerMetadata {
	return infer.ServerMetadata{Name: m.cfg.ServerName, Version: m.cfg.ServerVersion, Extensions: slices.Clone(Extensions)}
}

// Live implements infer.Service: the process answers, so it is live.
func (m *Manager) Live() bool { return true }

// Ready implements infer.Service: started and, with strict readiness, every
// model that should be loaded has a serving version.
func (m *Manager) Ready() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.ready {
		return false
	}
	if !m.cfg.StrictReadiness {
		return true
	}
	for _, mod := range m.models {
		if mod.wanted && len(mod.versions) == 0 {
			return false
		}
	}
	return true
}

// ModelReady implements infer.Service.
func (m *Manager) ModelReady(_ context.Context, name, ver string) (bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, err := m.lookup(name, ver)
	return err == nil, nil
}

// ModelMetadata implements infer.Service.
func (m *Manager) ModelMetadata(_ context.Context, name, ver string) (*infer.ModelMetadata, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, err := m.lookup(name, ver)
	if err != nil {
		return nil, err
	}
	md := &infer.ModelMetadata{
		Name:     name,
		Platform: v.config.Platform,
		Inputs:   v.metadata(v.inputs, v.inputOrder()),
		Outputs:  v.metadata(v.outputs, v.outputOrder),
	}
	for _, n := range slices.Sorted(maps.Keys(m.models[name].versions)) {
		md.Versions = append(md.Versions, strconv.FormatInt(n, 10))
	}
	return md, nil
}

// ModelConfig implements infer.Service.
func (m *Manager) ModelConfig(_ context.Context, name, ver string) (*pb.ModelConfig, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, err := m.lookup(name, ver)
	if err != nil {
		return nil, err
	}
	return proto.Clone(v.config).(*pb.ModelConfig), nil
}

// ModelStatistics implements infer.Service.
func (m *Manager) ModelStatistics(_ context.Context, name, ver string) ([]*pb.ModelStatistics, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*pb.ModelStatistics
	if name == "" {
		for _, n := range slices.Sorted(maps.Keys(m.models)) {
			for _, vn := range slices.Sorted(maps.Keys(m.models[n].versions)) {
				out = append(out, m.models[n].versions[vn].stats.Snapshot())
			}
		}
		return out, nil
	}
	if ver != "" {
		v, err := m.lookup(name, ver)
		if err != nil {
			return nil, err
		}
		return []*pb.ModelStatistics{v.stats.Snapshot()}, nil
	}
	mod := m.models[name]
	if mod == nil || len(mod.versions) == 0 {
		return nil, infer.Errorf(infer.CodeNotFound, "requested model '%s' is not available", name)
	}
	for _, vn := range slices.Sorted(maps.Keys(mod.versions)) {
		out = append(out, mod.versions[vn].stats.Snapshot())
	}
	return out, nil
}

// RepositoryIndex implements infer.Service: every model folder, with a row
// per serving version, or one row with the state and the reason it does not
// serve. Folders never asked to load have no state, as in Triton.
func (m *Manager) RepositoryIndex(_ context.Context, readyOnly bool) ([]infer.IndexEntry, error) {
	names, err := repository.ModelNames(m.cfg.Repository)
	if err != nil {
		return nil, infer.Errorf(infer.CodeInternal, "%v", err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for name := range m.models {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out []infer.IndexEntry
	for _, name := range names {
		mod := m.models[name]
		if mod != nil && len(mod.versions) > 0 {
			for _, vn := range slices.Sorted(maps.Keys(mod.versions)) {
				out = append(out, infer.IndexEntry{Name: name, Version: strconv.FormatInt(vn, 10), State: infer.StateReady, Reason: mod.reason})
			}
			continue
		}
		if readyOnly {
			continue
		}
		e := infer.IndexEntry{Name: name}
		if mod != nil {
			e.State, e.Reason = mod.state, mod.reason
		}
		out = append(out, e)
	}
	return out, nil
}

// lookup finds a serving version; the caller holds m.mu. An empty version
// means the highest serving one.
func (m *Manager) lookup(name, ver string) (*version, error) {
	mod := m.models[name]
	if mod == nil || len(mod.versions) == 0 {
		if !m.ready {
			// Starting (its models still loading) or stopping: another
			// worker may serve the model, and UNAVAILABLE (HTTP 503) is
			// what the gateway retries on another host; NOT_FOUND is final.
			return nil, infer.Errorf(infer.CodeUnavailable, "Request for model '%s': the server is not ready (starting or stopping)", name)
		}
		return nil, infer.Errorf(infer.CodeNotFound, "Request for unknown model: '%s' is not found", name)
	}
	if ver == "" {
		return mod.versions[slices.Max(slices.Collect(maps.Keys(mod.versions)))], nil
	}
	n, err := strconv.ParseInt(ver, 10, 64)
	if err != nil {
		return nil, infer.Errorf(infer.CodeInvalidArgument, "model version %q for model '%s' is not a number", ver, name)
	}
	v, ok := mod.versions[n]
	if !ok {
		return nil, infer.Errorf(infer.CodeNotFound, "Request for unknown model: '%s' version %d is not found", name, n)
	}
	return v, nil
}
