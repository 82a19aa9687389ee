package ratelimit

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/rueidis"
)

// incrScript adds ARGV[1] to the counter KEYS[1] and gives a new counter
// its expiry (ARGV[2] seconds) in one atomic step: a counter never
// outlives its window for want of an EXPIRE that did not arrive. One key
// per call, so that counters of different clients may live on different
// Redis Cluster slots; a request's calls travel in one round trip.
var incrScript = rueidis.NewLuaScript(`
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return n`)

// errNotConnected: Redis has not been reached since start.
var errNotConnected = errors.New("not connected to Redis yet")

// RedisOptions say how to reach Redis.
type RedisOptions struct {
	Address  string // host:port; a Redis Cluster is found from it
	Password string // AUTH, if Redis has one
	TLS      *tls.Config
	Logger   *slog.Logger
}

// Redis is a Counter on Redis. It connects in the background, so that
// helix-authz starts (and authenticates) while Redis is down; until the
// first connection, Incr fails and the failure mode decides. rueidis
// pipelines concurrent calls on one connection by itself, which is what
// keeps Redis's CPU per request low under load, and reconnects after a
// connection is lost.
type Redis struct {
	mu     sync.RWMutex
	client rueidis.Client
	cancel context.CancelFunc
	done   chan struct{}
}

// NewRedis starts connecting to Redis; Close stops.
func NewRedis(o RedisOptions) *Redis {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Redis{cancel: cancel, done: make(chan struct{})}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	go r.connect(ctx, o, log)
	return r
}

func (r *Redis) connect(ctx context.Context, o RedisOptions, log *slog.Logger) {
	defer close(r.done)
	opt := rueidis.ClientOption{
		InitAddress:  []string{o.Address},
		Password:     o.Password,
		TLSConfig:    o.TLS,
		DisableCache: true, // no client-side caching: counters change on every call
		Dialer:       net.Dialer{Timeout: 2 * time.Second},
	}
	attempt := 0
	client, err := backoff.Retry(ctx, func() (rueidis.Client, error) {
		c, err := rueidis.NewClient(opt)
		if err != nil {
			attempt++
			if attempt == 1 || attempt%10 == 0 {
				log.Warn("ratelimit: Redis not reachable yet; the failure mode decides meanwhile", "address", o.Address, "attempt", attempt, "error", err)
			}
		}
		return c, err
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{
		InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 5 * time.Second,
	}), backoff.WithMaxElapsedTime(0))
	if err != nil {
		return // Close was called
	}
	log.Info("ratelimit: connected to Redis", "address", o.Address)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Err() != nil {
		client.Close()
		return
	}
	r.client = client
}

// IncrBy implements Counter.
func (r *Redis) IncrBy(ctx context.Context, incs []Increment) ([]int64, error) {
	r.mu.RLock()
	client := r.client
	r.mu.RUnlock()
	if client == nil {
		return nil, errNotConnected
	}
	execs := make([]rueidis.LuaExec, len(incs))
	for i, inc := range incs {
		execs[i] = rueidis.LuaExec{
			Keys: []string{inc.Key},
			Args: []string{strconv.FormatInt(inc.By, 10), strconv.FormatInt(inc.TTL, 10)},
		}
	}
	counts := make([]int64, len(incs))
	for i, res := range incrScript.ExecMulti(ctx, client, execs...) {
		n, err := res.AsInt64()
		if err != nil {
			return nil, err
		}
		counts[i] = n
	}
	return counts, nil
}

// Close stops connecting and closes the connection.
func (r *Redis) Close() {
	r.cancel()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client != nil {
		r.client.Close()
		r.client = nil
	}
}
