package httpapi

import (
	pb "github.com/helixflow/helixflow/proto/inference"
)

// The statistics JSON, field for field and in the order Triton writes it
// (docs/protocol/extension_statistics.md). Empty lists and maps are
// written as [] and {}, never omitted.

type statsResponseJSON struct {
	ModelStats []modelStatJSON `json:"model_stats"`
}

type modelStatJSON struct {
	Name           string                       `json:"name"`
	Version        string                       `json:"version"`
	LastInference  uint64                       `json:"last_inference"`
	InferenceCount uint64                       `json:"inference_count"`
	ExecutionCount uint64                       `json:"execution_count"`
	InferenceStats inferStatsJSON               `json:"inference_stats"`
	ResponseStats  map[string]responseStatsJSON `json:"response_stats"`
	BatchStats     []batchStatsJSON             `json:"batch_stats"`
	MemoryUsage    []memoryUsageJSON            `json:"memory_usage"`
}

type durationJSON struct {
	Count uint64 `json:"count"`
	Ns    uint64 `json:"ns"`
}

type inferStatsJSON struct {
	Success       durationJSON `json:"success"`
	Fail          durationJSON `json:"fail"`
	Queue         durationJSON `json:"queue"`
	ComputeInput  durationJSON `json:"compute_input"`
	ComputeInfer  durationJSON `json:"compute_infer"`
	ComputeOutput durationJSON `json:"compute_output"`
	CacheHit      durationJSON `json:"cache_hit"`
	CacheMiss     durationJSON `json:"cache_miss"`
}

type responseStatsJSON struct {
	ComputeInfer  durationJSON `json:"compute_infer"`
	ComputeOutput durationJSON `json:"compute_output"`
	Success       durationJSON `json:"success"`
	Fail          durationJSON `json:"fail"`
	EmptyResponse durationJSON `json:"empty_response"`
	Cancel        durationJSON `json:"cancel"`
}

type batchStatsJSON struct {
	BatchSize     uint64       `json:"batch_size"`
	ComputeInput  durationJSON `json:"compute_input"`
	ComputeInfer  durationJSON `json:"compute_infer"`
	ComputeOutput durationJSON `json:"compute_output"`
}

type memoryUsageJSON struct {
	Type     string `json:"type"`
	ID       int64  `json:"id"`
	ByteSize uint64 `json:"byte_size"`
}

func statsJSON(stats []*pb.ModelStatistics) statsResponseJSON {
	out := statsResponseJSON{ModelStats: make([]modelStatJSON, 0, len(stats))}
	for _, s := range stats {
		if s == nil {
			continue
		}
		ms := modelStatJSON{
			Name:           s.GetName(),
			Version:        s.GetVersion(),
			LastInference:  s.GetLastInference(),
			InferenceCount: s.GetInferenceCount(),
			ExecutionCount: s.GetExecutionCount(),
			ResponseStats:  make(map[string]responseStatsJSON, len(s.GetResponseStats())),
			BatchStats:     make([]batchStatsJSON, 0, len(s.GetBatchStats())),
			MemoryUsage:    make([]memoryUsageJSON, 0, len(s.GetMemoryUsage())),
		}
		if is := s.GetInferenceStats(); is != nil {
			ms.InferenceStats = inferStatsJSON{
				Success:       duration(is.GetSuccess()),
				Fail:          duration(is.GetFail()),
				Queue:         duration(is.GetQueue()),
				ComputeInput:  duration(is.GetComputeInput()),
				ComputeInfer:  duration(is.GetComputeInfer()),
				ComputeOutput: duration(is.GetComputeOutput()),
				CacheHit:      duration(is.GetCacheHit()),
				CacheMiss:     duration(is.GetCacheMiss()),
			}
		}
		for key, rs := range s.GetResponseStats() {
			ms.ResponseStats[key] = responseStatsJSON{
				ComputeInfer:  duration(rs.GetComputeInfer()),
				ComputeOutput: duration(rs.GetComputeOutput()),
				Success:       duration(rs.GetSuccess()),
				Fail:          duration(rs.GetFail()),
				EmptyResponse: duration(rs.GetEmptyResponse()),
				Cancel:        duration(rs.GetCancel()),
			}
		}
		for _, bs := range s.GetBatchStats() {
			ms.BatchStats = append(ms.BatchStats, batchStatsJSON{
				BatchSize:     bs.GetBatchSize(),
				ComputeInput:  duration(bs.GetComputeInput()),
				ComputeInfer:  duration(bs.GetComputeInfer()),
				ComputeOutput: duration(bs.GetComputeOutput()),
			})
		}
		for _, mu := range s.GetMemoryUsage() {
			ms.MemoryUsage = append(ms.MemoryUsage, memoryUsageJSON{
				Type: mu.GetType(), ID: mu.GetId(), ByteSize: mu.GetByteSize(),
			})
		}
		out.ModelStats = append(out.ModelStats, ms)
	}
	return out
}

func duration(d *pb.StatisticDuration) durationJSON {
	return durationJSON{Count: d.GetCount(), Ns: d.GetNs()}
}
