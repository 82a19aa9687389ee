//go:build !linux

package scheduler

import (
	"errors"
	"time"
)

// kernelTimer exists on Linux only (alarm_linux.go); elsewhere the alarm
// has its runtime timer alone.
type kernelTimer struct{}

func newKernelTimer(func()) (*kernelTimer, error) {
	return nil, errors.ErrUnsupported
}

func (*kernelTimer) set(time.Duration) {}

func (*kernelTimer) close() {}
