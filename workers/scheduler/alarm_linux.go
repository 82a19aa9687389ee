package scheduler

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// kernelTimer is a timerfd in the Go runtime's poller: its expiry makes the
// fd readable, which wakes an idle runtime's epoll_wait at once.
type kernelTimer struct {
	f    *os.File
	conn syscall.RawConn
	fire func()
}

// newKernelTimer starts a goroutine that calls fire on each expiry until
// close.
func newKernelTimer(fire func()) (*kernelTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd_create: %w", err)
	}
	// Non-blocking, so os.NewFile puts it in the runtime's poller.
	f := os.NewFile(uintptr(fd), "timerfd")
	conn, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	k := &kernelTimer{f: f, conn: conn, fire: fire}
	go k.read()
	return k, nil
}

func (k *kernelTimer) read() {
	var expirations [8]byte
	for {
		if _, err := k.f.Read(expirations[:]); err != nil {
			return // closed
		}
		k.fire()
	}
}

// set makes the timer expire after d, replacing an earlier setting; 0
// disarms it. Errors come only from a closed timer; the runtime
// timer armed beside this one fires regardless.
func (k *kernelTimer) set(d time.Duration) {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(d.Nanoseconds())}
	_ = k.conn.Control(func(fd uintptr) { _ = unix.TimerfdSettime(int(fd), 0, &spec, nil) })
}

func (k *kernelTimer) close() { k.f.Close() }
