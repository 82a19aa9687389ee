package gates

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// ReferenceIters is the reference workload's size: some 100 ms of CPU on
// the machine the baseline comes from.
const ReferenceIters = 1000

// referenceDoc is what the reference workload encodes and decodes.
type referenceDoc struct {
	Name   string            `json:"name"`
	Shape  []int             `json:"shape"`
	Values []float64         `json:"values"`
	Params map[string]string `json:"params"`
}

// Reference runs a fixed CPU workload of the gate's own, iters times, in
// this process, and returns its CPU time per iteration. The work is the
// kind the hot paths do (JSON encoding and decoding, sorting, map updates,
// allocation) and none of HelixFlow's code, so that a change to HelixFlow
// cannot move it: its CPU time tracks only how fast the machine is at the
// moment (another VM on the sibling thread, caches that other processes
// churn), which moves every benchmark's CPU time alike. Run keeps each
// benchmark's CPU time in units of it (cpu-refs/op).
func Reference(iters int) (time.Duration, error) {
	doc := referenceDoc{Name: "reference", Shape: []int{1, 256}, Params: map[string]string{}}
	for i := range 256 {
		doc.Values = append(doc.Values, float64((i*7919)%256)*0.37-40)
	}
	for i := range 16 {
		doc.Params["key"+strconv.Itoa(i)] = strconv.Itoa(i * i)
	}
	before, err := processCPU()
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for range iters {
		data, err := json.Marshal(doc)
		if err != nil {
			return 0, err
		}
		var back referenceDoc
		if err := json.Unmarshal(data, &back); err != nil {
			return 0, err
		}
		slices.Sort(back.Values)
		counts := map[string]int{}
		for k, v := range back.Params {
			counts[k] += len(v)
		}
		sum += back.Values[len(back.Values)/2] + float64(len(counts))
	}
	after, err := processCPU()
	if err != nil {
		return 0, err
	}
	if sum == 0 { // keeps the work observable
		return 0, fmt.Errorf("reference workload computed nothing")
	}
	return (after - before) / time.Duration(iters), nil
}

// processCPU is this process's CPU time so far, user and system.
func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
