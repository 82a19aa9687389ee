package main

import (
	"io"
	"math/rand"
	"net/http"
	"time"

	"github.com/coocood/freecache"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/envoyproxy/ratelimit/src/metrics"
	"github.com/envoyproxy/ratelimit/src/redis"
	"github.com/envoyproxy/ratelimit/src/server"
	ratelimit "github.com/envoyproxy/ratelimit/src/service"
	"github.com/envoyproxy/ratelimit/src/settings"
	"github.com/envoyproxy/ratelimit/src/stats"
	"github.com/envoyproxy/ratelimit/src/stats/prom"
	"github.com/envoyproxy/ratelimit/src/utils"
	gostats "github.com/lyft/gostats"
	logger "github.com/sirupsen/logrus"
)

// serve runs the service as envoyproxy/ratelimit's runner (src/
// service_cmd/runner) does for the settings environment() gives
// (Prometheus stats, Redis, limits over xDS, no tracing), less one thing:
// the runner always adds /json to the plain HTTP port, which answers
// ShouldRateLimit with no certificate, so anyone who reaches that port
// (probes need it off loopback in Kubernetes) could spend or read any
// client's quota. The runner has no setting to leave it out, hence this
// wiring by hand. The HTTP port keeps /healthcheck; Envoy calls the gRPC
// service over mTLS. serve returns only if the service stops by itself:
// on SIGINT/SIGTERM it stops gracefully and exits.
func serve(s settings.Settings) {
	if level, err := logger.ParseLevel(s.LogLevel); err == nil {
		logger.SetLevel(level)
	}
	logger.SetFormatter(&logger.JSONFormatter{
		TimestampFormat: time.RFC3339Nano,
		FieldMap:        logger.FieldMap{logger.FieldKeyTime: "@timestamp", logger.FieldKeyMsg: "@message"},
	})

	store := gostats.NewStore(prom.NewPrometheusSink(prom.WithAddr(s.PrometheusAddr),
		prom.WithPath(s.PrometheusPath), prom.WithMapperYamlPath(s.PrometheusMapperYaml)), false)
	go store.Start(time.NewTicker(s.StatsFlushInterval))
	statsManager := stats.NewStatManager(store, s)

	var localCache *freecache.Cache
	if s.LocalCacheSizeInBytes != 0 {
		localCache = freecache.NewCache(s.LocalCacheSizeInBytes)
	}
	reporter := metrics.NewServerReporter(store.ScopeWithTags("ratelimit_server", s.ExtraTags))
	srv := server.NewServer(s, "ratelimit", statsManager, localCache,
		settings.GrpcUnaryInterceptor(reporter.UnaryServerInterceptor()))
	cache, closer := redis.NewRateLimiterCacheImplFromSettings(s, localCache, srv, utils.NewTimeSourceImpl(),
		rand.New(utils.NewLockedSource(time.Now().Unix())), s.ExpirationJitterMaxSeconds, statsManager)
	defer closer.Close()
	svc := ratelimit.NewService(cache, srv.Provider(), statsManager, srv.HealthChecker(), utils.NewTimeSourceImpl(),
		s.GlobalShadowMode, s.ForceStartWithoutInitialConfig, s.HealthyWithAtLeastOneConfigLoaded)
	srv.AddDebugHttpEndpoint("/rlconfig", "print out the currently loaded configuration for debugging",
		func(w http.ResponseWriter, _ *http.Request) {
			if current, _, _ := svc.GetCurrentConfig(); current != nil {
				_, _ = io.WriteString(w, current.Dump())
			}
		})
	pb.RegisterRateLimitServiceServer(srv.GrpcServer(), svc)
	srv.Start()
}
