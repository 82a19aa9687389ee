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

// incrScript increments each key and gives a key its expiry on the
// window's first hit, in one atomic step: a counter never outlives its
// window for want of an EXPIRE that did not arrive.
var incrScript = rueidis.NewLuaScript(`
local counts = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ARGV[i]) end
  counts[i] = n
end
return counts`)

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

// Incr implements Counter.
func (r *Redis) Incr(ctx context.Context, keys []string, ttlSeconds []int64) ([]int64, error) {
	r.mu.RLock()
	client := r.client
	r.mu.RUnlock()
	if client == nil {
		return nil, errNotConnected
	}
	args := make([]string, len(ttlSeconds))
	for i, ttl := range ttlSeconds {
		args[i] = strconv.FormatInt(ttl, 10)
	}
	return incrScript.Exec(ctx, client, keys, args).AsIntSlice()
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
