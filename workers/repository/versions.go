package repository

import (
	"fmt"
	"os"
	"slices"
	"strconv"

	pb "github.com/helixflow/helixflow/proto/inference"
)

// Versions lists the numeric version folders of a model folder, ascending.
// Other entries are ignored, as Triton ignores them.
func Versions(dir string) ([]int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list versions of %s: %w", dir, err)
	}
	var out []int64
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		v, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil || v < 0 || strconv.FormatInt(v, 10) != e.Name() {
			continue
		}
		out = append(out, v)
	}
	slices.Sort(out)
	return out, nil
}

// SelectVersions applies a version policy to the available versions
// (ascending). The default policy is latest with one version.
func SelectVersions(available []int64, policy *pb.ModelVersionPolicy) ([]int64, error) {
	switch p := policy.GetPolicyChoice().(type) {
	case nil, *pb.ModelVersionPolicy_Latest_:
		n := 1
		if l := policy.GetLatest(); l != nil && l.NumVersions > 0 {
			n = int(l.NumVersions)
		}
		if n > len(available) {
			n = len(available)
		}
		return slices.Clone(available[len(available)-n:]), nil
	case *pb.ModelVersionPolicy_All_:
		return slices.Clone(available), nil
	case *pb.ModelVersionPolicy_Specific_:
		var out []int64
		for _, v := range p.Specific.Versions {
			if !slices.Contains(available, v) {
				return nil, fmt.Errorf("%w: version_policy asks for version %d, which has no folder", ErrInvalidConfig, v)
			}
			if !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
		slices.Sort(out)
		return out, nil
	default:
		return nil, fmt.Errorf("%w: unknown version_policy", ErrInvalidConfig)
	}
}
